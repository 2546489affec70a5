"""The synthetic video workload (include/liteattn/workload.hpp): video-DiT-like attention inputs along a denoising
trajectory, deterministic by seed, from the C++ generator. Results on it are results on a
synthetic workload, never on a real model."""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import _ext

PRESETS = ("default", "wan13b-480p", "wan14b-480p", "wan14b-720p")


class VideoWorkload:
    """q, k, v of shape (1, L, H, D) for each step of a trajectory.

    VideoWorkload()                         # the reduced CPU default: 5x12x16 tokens, 4 heads, D=128, 20 steps
    VideoWorkload("wan14b-480p")            # 21x30x52 tokens, 40 heads, 50 steps
    VideoWorkload(frames=3, height=8, width=8, heads=2, head_dim=64, steps=10, seed=1)
    """

    def __init__(self, preset: str = "default", *, frames: Optional[int] = None, height: Optional[int] = None,
                 width: Optional[int] = None, heads: Optional[int] = None, head_dim: Optional[int] = None,
                 steps: Optional[int] = None, seed: int = 0, shift: Optional[float] = None):
        cfg = _ext.WorkloadConfig.preset(preset)
        for name, value in (("frames", frames), ("height", height), ("width", width), ("heads", heads),
                            ("head_dim", head_dim), ("steps", steps), ("shift", shift)):
            if value is not None:
                setattr(cfg, name, value)
        cfg.seed = int(seed)
        self._w = _ext.VideoWorkload(cfg)
        self.config = cfg

    @property
    def steps(self) -> int:
        return self.config.steps

    @property
    def shape(self):
        c = self.config
        return (1, c.tokens, c.heads, c.head_dim)

    def sigma(self, step: int) -> float:
        return self._w.sigma(step)

    def locality(self, head: int) -> float:
        return self._w.locality(head)

    def generate(self, step: int, dtype: str = "float32", like=None):
        """(q, k, v) for a step: float32 NumPy arrays, converted to `dtype` ('float32', 'float16',
        'bfloat16') and, with like=<torch tensor or cupy array>, to that library and device."""
        q, k, v = (np.empty(self.shape, np.float32) for _ in range(3))
        self._w.generate(int(step), q, k, v)
        if like is None:
            if dtype == "float32":
                return q, k, v
            if dtype == "float16":
                return tuple(x.astype(np.float16) for x in (q, k, v))
            raise ValueError(f"dtype: NumPy output supports float32 and float16 (pass like=<tensor> for {dtype})")
        mod = type(like).__module__.split(".")[0]
        if mod == "torch":
            import torch

            td = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
            return tuple(torch.from_numpy(x).to(device=like.device, dtype=td) for x in (q, k, v))
        if mod == "cupy":
            import cupy

            with like.device:
                return tuple(cupy.asarray(x).astype(dtype) for x in (q, k, v))
        raise TypeError(f"like: expected a torch tensor or cupy array, got {type(like).__name__}")

    def trajectory(self, dtype: str = "float32", like=None):
        """A callable step -> (q, k, v), for calibrate()."""
        return lambda step: self.generate(step, dtype, like)

    def __iter__(self):
        for s in range(self.steps):
            yield self.generate(s)
