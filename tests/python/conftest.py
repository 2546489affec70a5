"""Shared helpers for the lite_attention tests: an fp64 NumPy reference of attention under a
tile mask, random inputs, and the `gpu` marker's skip."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

import lite_attention as la

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _cuda_device_present() -> bool:
    if la.cuda_available():
        return True
    if HAS_TORCH:
        import torch

        return torch.cuda.is_available()
    return False


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run on the GPU's kernel (sm90 on Hopper, sm80 on other GPUs of compute
    capability 8.0+): skipped without a GPU, or on a GPU no kernel serves."""
    if {"sm90", "sm80"} & set(la.available_backends()):
        return
    reason = "no liteattn CUDA kernel for this GPU" if _cuda_device_present() else "skipped: no GPU"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def randn(shape, seed=0, dtype=np.float32, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def reference(q, k, v, scale=None, tile_mask=None, tile=(128, 128), must_skip_tiles=()):
    """fp64 attention of (B, L, H, D) arrays; tile_mask (B, H, nq, nk) bool keeps key tiles per
    query tile (None: dense). Returns out (B, Lq, H, D) and lse (B, H, Lq); rows with no kept
    tile get 0 and -inf."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    v = np.asarray(v, np.float64)
    B, Lq, H, D = q.shape
    Lk, Hkv = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    out = np.zeros((B, Lq, H, D))
    lse = np.full((B, H, Lq), -np.inf)
    for b in range(B):
        for h in range(H):
            hk = h // (H // Hkv)
            s = q[b, :, h] @ k[b, :, hk].T * scale  # (Lq, Lk)
            if tile_mask is not None:
                allowed = np.repeat(np.repeat(tile_mask[b, h], tile[0], axis=0), tile[1], axis=1)[:Lq, :Lk]
                s = np.where(allowed, s, -np.inf)
            m = s.max(axis=1, keepdims=True)
            ok = np.isfinite(m[:, 0])
            p = np.where(ok[:, None], np.exp(s - np.where(ok[:, None], m, 0)), 0.0)
            l = p.sum(axis=1)
            out[b, ok, h] = (p[ok] / l[ok, None]) @ v[b, :, hk]
            lse[b, h, ok] = m[ok, 0] + np.log(l[ok])
    return out, lse


def torch_drifting(step, L=128, H=2, D=32, dtype=None, device="cpu"):
    """torch inputs (q, k, v) of one denoising step: q = k drift slowly from a fixed base over the
    steps (float32 unless dtype is given)."""
    import torch

    dtype = torch.float32 if dtype is None else dtype
    base = randn((1, L, H, D), 0)
    t = torch.from_numpy(base + 0.05 * randn(base.shape, 100 + step)).to(device=device, dtype=dtype)
    return t, t, torch.from_numpy(randn((1, L, H, D), 1)).to(device=device, dtype=dtype)


def rel_l1(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.abs(a - b).sum() / np.abs(b).sum())


def record_ops():
    """A torch dispatch mode that records the names of the ops called under it (an active mode
    also sends LiteAttention's eager calls through torch.ops, as tracing does)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class RecordOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func.name())
            return func(*args, **(kwargs or {}))

    return RecordOps()
