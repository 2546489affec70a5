"""torch.library registration of the binding, so that torch.compile(fullgraph=True) traces a
LiteAttention call as one opaque op (no graph break) and a call can be captured in a CUDA graph.

Ops (namespace ``lite_attention``):
  forward(q, k, v, mask!, row_visits!, row_max!, kept!, cumulative!, ..., backend="auto") -> (out, lse)
      The skip-state buffers are mutable arguments (the op writes them); out and lse are new
      tensors. lse is (B, H, Lq) float32 when return_lse, else an empty (0,) tensor. backend:
      "auto", "cpu", "sm90" or "sm80" (last, with a default, so calls without it keep working).
  reset_state(mask!, row_visits!, row_max!, kept!, ...) -> ()

Each op has a CPU and a CUDA kernel (the same Python function calling the binding, on the
caller's current CUDA stream) and a fake (meta) kernel for tracing. Nothing in a call
synchronizes the device or flips host-side state: which mask buffer a row reads is decided by
the row's own visit counter in device memory (skip_state.hpp), so a captured graph swaps the
buffers correctly on every replay. Note what a CUDA graph does freeze: the host-side arguments of
the captured call (threshold, skipping on/off, ranges), as for any kernel argument.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import _ext
from ._arrays import torch_lib
from ._core import check_call, state_buffers, state_key
from ._ranges import flatten, pairs

NAMESPACE = "lite_attention"

_FORWARD_SCHEMA = (
    "forward(Tensor q, Tensor k, Tensor v, Tensor(a!)? mask, Tensor(b!)? row_visits, Tensor(c!)? row_max, "
    "Tensor(d!)? kept, Tensor(e!)? cumulative, Tensor threshold, Tensor enabled, float? scale, str criterion, "
    "str order, int[] must_do, "
    "int[] must_skip, int[] dense_queries, int[]? cpu_tile, int cpu_threads, bool reset, bool return_lse, "
    "str backend='auto') -> (Tensor, Tensor)"
)
_RESET_SCHEMA = (
    "reset_state(Tensor(a!) mask, Tensor(b!) row_visits, Tensor(c!)? row_max, Tensor(d!) kept, int[] q_shape, "
    "int len_k, str criterion, int[]? cpu_tile) -> ()"
)



def _capsule(t: Optional[torch.Tensor]):
    # A plain DLPack capsule: no stream handshake with the legacy default stream (see _arrays.py).
    return None if t is None else torch.utils.dlpack.to_dlpack(t)


# The current stream's raw handle without building a torch.cuda.Stream object (what code that
# torch.compile generates uses too); current_stream() where this torch lacks it.
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def _stream(t: torch.Tensor) -> int:
    if not t.is_cuda:  # is_cuda and get_device() cost a fifth of reading t.device
        return 0
    if _raw_stream is not None:
        return int(_raw_stream(t.get_device()))
    return int(torch.cuda.current_stream(t.device).cuda_stream)


def _host_scalar(t, name: str):
    if not isinstance(t, torch.Tensor):
        return t
    if t.device.type != "cpu":
        raise ValueError(f"{name}: expected a CPU scalar tensor (reading a device value would synchronize)")
    return t.item()


def _launch(q, k, v, state, threshold: float, enabled: bool, scale, criterion, order, must_do, must_skip,
            dense_queries, cpu_tile, cpu_threads, backend: str, reset: bool, return_lse: bool, call_layout=None):
    """Allocates out (and lse when asked for) and runs the binding on q's device and current
    stream; state is the binding's StateBuffers or None; ranges are lists of (start, end) pairs;
    cpu_tile is a (rows, cols) tuple or None; call_layout (the binding's CallLayout of q, k, v and
    out, from check_call) passes data pointers instead of DLPack tensors. Returns (out, lse or
    None)."""
    out = torch.empty_like(q, memory_format=torch.contiguous_format)  # (B, Lq, H, D); 2 µs less than torch.empty
    lse = torch.empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32, device=q.device) if return_lse else None
    options = (state, scale, enabled, threshold, criterion, order, must_do, must_skip, dense_queries, cpu_tile,
               cpu_threads, backend, _stream(q), reset)
    # No device switch here: the C++ core makes the tensors' GPU current for its CUDA work.
    if call_layout is not None:
        _ext.forward_layout(call_layout, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), _capsule(lse),
                            *options)
    else:
        _ext.forward(_capsule(q), _capsule(k), _capsule(v), _capsule(out), _capsule(lse), *options)
    return out, lse


def _forward_impl(q, k, v, mask, row_visits, row_max, kept, cumulative, threshold, enabled, scale, criterion, order,
                  must_do, must_skip, dense_queries, cpu_tile, cpu_threads, reset, return_lse, backend="auto"):
    cpu_tile = None if cpu_tile is None else tuple(cpu_tile)
    # The call's key (the op's state tensors are checked against it) and, as in eager calls, its
    # cached CallLayout, so the binding takes data pointers.
    _, key, call_layout = check_call(torch_lib(), q, k, v, criterion, cpu_tile, names=("q", "k", "v"))
    state = None if mask is None else state_buffers(key, _capsule, mask, row_visits, row_max, kept, cumulative)
    out, lse = _launch(q, k, v, state, float(_host_scalar(threshold, "threshold")),
                       bool(_host_scalar(enabled, "enabled")), scale, criterion, order, pairs(must_do),
                       pairs(must_skip), pairs(dense_queries), cpu_tile, cpu_threads, backend, reset, return_lse,
                       call_layout)
    return out, (lse if lse is not None else torch.empty((0,), dtype=torch.float32, device=q.device))


def _runs_eagerly(q, k, v) -> bool:
    """True when nothing observes the op: no torch.compile trace, plain tensors (no subclass such
    as a fake tensor), no torch-function or dispatch mode. Then a call runs the op's
    implementation directly; going through torch.ops costs ~40 µs of dispatcher work per call
    (schema binding, mutable-argument bookkeeping) that only tracing needs."""
    return (not torch.compiler.is_compiling() and type(q) is torch.Tensor and type(k) is torch.Tensor
            and type(v) is torch.Tensor and not torch._C._is_torch_function_mode_enabled()
            and torch._C._len_torch_dispatch_stack() == 0)


def _forward_fake(q, k, v, mask, row_visits, row_max, kept, cumulative, threshold, enabled, scale, criterion, order,
                  must_do, must_skip, dense_queries, cpu_tile, cpu_threads, reset, return_lse, backend="auto"):
    B, Lq, H, D = q.shape
    out = q.new_empty((B, Lq, H, D))
    lse = q.new_empty((B, H, Lq) if return_lse else (0,), dtype=torch.float32)
    return out, lse


def _define():
    lib = torch.library.Library(NAMESPACE, "FRAGMENT")
    lib.define(_FORWARD_SCHEMA)
    lib.define(_RESET_SCHEMA)
    for key in ("CPU", "CUDA"):
        lib.impl("forward", _forward_impl, key)
        lib.impl("reset_state", _reset_state_impl, key)
    torch.library.register_fake(f"{NAMESPACE}::forward", _forward_fake, lib=lib)
    torch.library.register_fake(f"{NAMESPACE}::reset_state", lambda *a: None, lib=lib)
    return lib


def _reset_state_impl(mask, row_visits, row_max, kept, q_shape, len_k, criterion, cpu_tile):
    # q_shape = (B, Lq, H, D, dtype index into _DTYPE_ORDER): the state key's dtype matters
    # through the tile shape (tile_shape(head_dim, dtype)).
    B, Lq, H, D, dtype_index = q_shape
    device = (mask.device.type, mask.device.index if mask.device.index is not None else 0)
    key = state_key((B, Lq, H, D), (B, len_k), _DTYPE_ORDER[dtype_index], device, criterion, cpu_tile)
    _ext.reset_state(state_buffers(key, _capsule, mask, row_visits, row_max, kept), _stream(mask))


_DTYPE_ORDER = ("float32", "bfloat16", "float16")
_LIB = _define()


_SCALARS: dict = {}  # (value, dtype) -> 0-dim CPU tensor, for eager calls


def _scalar(x, dtype):
    """x as the 0-dim CPU tensor the op takes. Eager calls reuse one tensor per value: the op
    only reads it, and making a new one costs ~5 µs per call. While torch.compile traces, a new
    one (a cached tensor would become a constant of the graph)."""
    if isinstance(x, torch.Tensor):
        return x
    if torch.compiler.is_compiling():
        return torch.tensor(x, dtype=dtype)
    key = (x, dtype)
    t = _SCALARS.get(key)
    if t is None:
        if len(_SCALARS) >= 256:  # thresholds from a calibration loop: keep the cache small
            _SCALARS.clear()
        with torch.inference_mode(False):
            t = _SCALARS[key] = torch.tensor(x, dtype=dtype)
    return t


class _ForwardOnly(torch.autograd.Function):
    """Connects the outputs to q, k, v when they require grad, with a backward that says clearly
    that there is none (instead of torch's silent 'no autograd kernel' fallback)."""

    @staticmethod
    def forward(ctx, q, k, v, out, lse):
        return out.clone(), (None if lse is None else lse.clone())

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("lite_attention: LiteAttention is inference-only (no backward); "
                                  "run it under torch.no_grad() or torch.inference_mode()")


def forward(q, k, v, state, opts, enabled, threshold, reset: bool, return_lse: bool, call_layout=None):
    """Calls torch.ops.lite_attention.forward with a SkipState (or None), CallOptions and the
    step's skipping switch and threshold (Python values or 0-dim CPU tensors). Eager calls run
    the op's implementation directly, with call_layout (check_call's CallLayout) when given."""
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        with torch.no_grad():
            out, lse = forward(q, k, v, state, opts, enabled, threshold, reset, return_lse, call_layout)
        return _ForwardOnly.apply(q, k, v, out, lse)
    if _runs_eagerly(q, k, v):
        return _launch(q, k, v, None if state is None else state.handle(),
                       float(_host_scalar(threshold, "threshold")), bool(_host_scalar(enabled, "enabled")),
                       opts.scale, opts.criterion, opts.order, opts.must_do, opts.must_skip, opts.dense_queries,
                       opts.cpu_tile, int(opts.cpu_threads), opts.backend, reset, return_lse, call_layout)
    if state is not None:
        mask, row_visits, row_max, kept = state.buffers()
        cumulative = state.cumulative
    else:
        mask = row_visits = row_max = kept = cumulative = None
    return torch.ops.lite_attention.forward(
        q, k, v, mask, row_visits, row_max, kept, cumulative, _scalar(threshold, torch.float32),
        _scalar(enabled, torch.bool), opts.scale, opts.criterion, opts.order, flatten(opts.must_do),
        flatten(opts.must_skip), flatten(opts.dense_queries), None if opts.cpu_tile is None else list(opts.cpu_tile),
        int(opts.cpu_threads), reset, return_lse, opts.backend)


def reset(state) -> None:
    k = state.key
    torch.ops.lite_attention.reset_state(
        state.mask, state.row_visits, state.row_max, state.kept,
        [k.batch, k.len_q, k.heads, k.head_dim, _DTYPE_ORDER.index(k.dtype)], k.len_k,
        "previous" if k.with_row_max else "running", None if k.tile is None else list(k.tile))
