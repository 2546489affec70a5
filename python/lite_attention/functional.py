"""Functional form over an explicit SkipState (for callers that manage states themselves)."""
from __future__ import annotations

from typing import Optional

from ._arrays import lib_of
from ._core import (BACKENDS, CRITERIA, ORDERS, CallOptions, SkipState, check_call, check_cpu_threads, check_cpu_tile,
                    check_option, check_scale, run)
from ._ranges import normalize_ranges
from .schedule import check_threshold


def attention(q, k, v, state: Optional[SkipState] = None, *, threshold: float = -10.0, scale: Optional[float] = None,
              criterion: str = "running", order: str = "alternate", must_do=None, must_skip=None,
              dense_queries=None, return_lse: bool = False, cpu_tile=None, cpu_threads: int = 0,
              backend: str = "auto"):
    """One attention call on (B, L, H, D) arrays. With a SkipState, the call reads and updates it
    (the state is shaped, or reshaped and reset, as the inputs need); with state=None it is plain
    dense attention. Returns out, or (out, lse) with lse float32 (B, H, Lq). backend: 'auto' (by
    the device), 'cpu', 'sm90' or 'sm80', as for LiteAttention."""
    lib = lib_of(q, "q")
    criterion = check_option(criterion, CRITERIA, "criterion")  # before check_call hashes it
    cpu_tile = check_cpu_tile(cpu_tile)
    checked = check_call(lib, q, k, v, criterion, cpu_tile, names=("q", "k", "v"))
    if state is not None and not isinstance(state, SkipState):
        raise TypeError(f"state: expected a lite_attention.SkipState or None, got {type(state).__name__}")
    threshold = check_threshold(threshold)
    opts = CallOptions(
        scale=check_scale(scale), criterion=criterion, order=check_option(order, ORDERS, "order"),
        must_do=normalize_ranges(must_do, k.shape[1], "must_do", "Lk"),
        must_skip=normalize_ranges(must_skip, k.shape[1], "must_skip", "Lk"),
        dense_queries=normalize_ranges(dense_queries, q.shape[1], "dense_queries", "Lq"),
        cpu_tile=cpu_tile, cpu_threads=check_cpu_threads(cpu_threads),
        backend=check_option(backend, BACKENDS, "backend"))
    out, lse = run(lib, q, k, v, state, opts, state is not None, threshold, return_lse, checked)
    return (out, lse) if return_lse else out
