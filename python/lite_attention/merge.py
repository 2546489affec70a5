"""LSE merge of partial attention results over disjoint key sets (method.md section 7):
lse = logsumexp_j lse_j, O = sum_j exp(lse_j - lse) * O_j, in float32; parts with lse = -inf
drop out, and a row whose parts are all -inf gets out 0 and lse -inf."""
from __future__ import annotations

from typing import Sequence

from . import _ext
from ._arrays import NumpyLib, lib_of


def merge_attention(outs: Sequence, lses: Sequence, return_lse: bool = False):
    """outs[j]: (B, L, H, D); lses[j]: float32 (B, H, L). Returns out (the dtype of outs[0]) or
    (out, lse). NumPy arrays merge in the C++ core; torch and CuPy arrays merge with their own
    library's operations on their device."""
    if not isinstance(outs, (list, tuple)) or not isinstance(lses, (list, tuple)):
        raise TypeError("merge_attention: expected lists outs=[O_0, O_1, ...] and lses=[lse_0, lse_1, ...]")
    if len(outs) == 0:
        raise ValueError("outs: expected at least one partial result")
    if len(outs) != len(lses):
        raise ValueError(f"lses: expected one lse per partial output ({len(outs)}), got {len(lses)}")
    lib = lib_of(outs[0], "outs[0]")
    dtype = lib.dtype_name(outs[0])
    if dtype is None:
        raise TypeError(f"outs[0]: expected dtype bfloat16, float16 or float32, got {lib.dtype_repr(outs[0])}")
    if outs[0].ndim != 4:
        raise ValueError(f"outs[0]: expected rank 4 (B, L, H, D), got shape {tuple(outs[0].shape)}")
    B, L, H, D = outs[0].shape
    for j, (o, l) in enumerate(zip(outs, lses)):
        for x, n in ((o, f"outs[{j}]"), (l, f"lses[{j}]")):
            if not lib.owns(x):
                raise TypeError(f"{n}: expected a {lib.name} array like outs[0], got {type(x).__name__}")
        if tuple(o.shape) != (B, L, H, D):
            raise ValueError(f"outs[{j}]: expected shape {(B, L, H, D)} (as outs[0]), got {tuple(o.shape)}")
        if lib.dtype_name(o) != dtype:
            raise TypeError(f"outs[{j}]: expected dtype {dtype} (as outs[0]), got {lib.dtype_repr(o)}")
        if tuple(l.shape) != (B, H, L):
            raise ValueError(f"lses[{j}]: expected shape (B, H, L) = {(B, H, L)}, got {tuple(l.shape)}")
        if lib.dtype_name(l) != "float32":
            raise TypeError(f"lses[{j}]: expected dtype float32, got {lib.dtype_repr(l)}")
        if lib.device(o) != lib.device(outs[0]) or lib.device(l) != lib.device(outs[0]):
            raise ValueError(f"outs[{j}] / lses[{j}]: expected the device of outs[0]")

    if isinstance(lib, NumpyLib):
        import numpy as np

        out = np.empty((B, L, H, D), dtype=outs[0].dtype)
        lse = np.empty((B, H, L), dtype=np.float32)
        x = lib.export  # bfloat16 (ml_dtypes) arrays go over as their bits
        _ext.merge_attention([x(np.ascontiguousarray(o) if o.strides[-1] != o.itemsize else o) for o in outs],
                             [np.ascontiguousarray(l) for l in lses], x(out), lse)
        return (out, lse) if return_lse else out
    return _merge_generic(lib, outs, lses, return_lse)


def _merge_generic(lib, outs, lses, return_lse):
    if lib.name == "torch":
        import torch as xp

        stack = lambda xs: xp.stack(list(xs))  # noqa: E731
        amax = lambda x: x.amax(dim=0)  # noqa: E731
    else:
        import cupy as xp

        stack = lambda xs: xp.stack(list(xs))  # noqa: E731
        amax = lambda x: x.max(axis=0)  # noqa: E731
    ls = stack(lses)  # (J, B, H, L)
    m = amax(ls)
    finite = m != -float("inf")
    safe_m = xp.where(finite, m, xp.zeros_like(m))
    w = xp.exp(ls - safe_m)  # -inf parts give 0
    total = w.sum(0)
    lse = xp.where(finite, safe_m + xp.log(xp.where(finite, total, xp.ones_like(total))), m)
    weights = xp.where(finite, w / xp.where(finite, total, xp.ones_like(total)), xp.zeros_like(w))  # (J, B, H, L)
    acc = None
    for j, o in enumerate(outs):
        wj = weights[j].permute(0, 2, 1)[..., None] if lib.name == "torch" else weights[j].transpose(0, 2, 1)[..., None]
        part = o.float() * wj if lib.name == "torch" else o.astype("float32") * wj
        acc = part if acc is None else acc + part
    out = lib.cast(acc, lib.dtype_name(outs[0]))
    return (out, lse) if return_lse else out
