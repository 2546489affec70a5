"""The layer between the public classes and the binding: input checks with the Python names
(query / key / value), the skip-state buffers (allocated with the input's array library), and
one call path per library (NumPy and CuPy call the binding directly; torch goes through the
torch.library ops in _torch_ops so that torch.compile and CUDA graphs see one opaque op).
"""
from __future__ import annotations

import atexit
import math
import weakref
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from . import _ext
from ._arrays import ArrayLib, torch_lib
from ._checks import check_integer
from ._ranges import Ranges

CRITERIA = ("running", "previous")
ORDERS = ("descending", "alternate", "diagonal_first")
# "auto": by the tensors' device (the CPU reference for CPU tensors, sm90 on compute capability
# 9.0 where the shape is within its limits, else sm80 on GPUs of 8.0 and newer); a named backend
# that cannot serve the device is a ValueError naming `backend`, raised by the C++ core at the call.
BACKENDS = ("auto", "cpu", "sm90", "sm80")
_DTYPES = ("float32", "bfloat16", "float16")

# Tile shape per (head dim, dtype), from the C++ core once at import, so that the state layout
# is pure Python (torch.compile traces it without leaving the graph).
_TILES = {(d, t): tuple(_ext.tile_shape(d, t)) for t in _DTYPES for d in range(1, 513)}


def tile_shape(head_dim: int, dtype: str) -> Tuple[int, int]:
    return _TILES.get((head_dim, dtype)) or tuple(_ext.tile_shape(head_dim, dtype))


def check_option(value: str, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
    return value


# --- input checks ---------------------------------------------------------------------------
def check_qkv(lib: ArrayLib, q, k, v, names=("query", "key", "value")) -> str:
    """Checks what the Python layer can name best; the C++ core checks everything again.
    Returns the dtype name. Each array's shape, dtype and device are read once: this runs on
    every call, and each attribute read of a torch tensor costs about a microsecond."""
    qn, kn, vn = names
    for x, n in ((k, kn), (v, vn)):
        if not lib.owns(x):
            raise TypeError(
                f"{n}: expected a {lib.name} array like {qn}, got {type(x).__module__}.{type(x).__qualname__}"
            )
    shapes = (tuple(q.shape), tuple(k.shape), tuple(v.shape))
    for shape, n in zip(shapes, names):
        if len(shape) != 4:
            raise ValueError(f"{n}: expected rank 4 (batch, seq_len, heads, head_dim), got shape {shape}")
        if min(shape) < 1:
            raise ValueError(f"{n}: expected every dimension >= 1 in (batch, seq_len, heads, head_dim), "
                             f"got shape {shape}")
    q_shape, k_shape, v_shape = shapes
    dtype = lib.dtype_name(q)
    if dtype is None:
        raise TypeError(f"{qn}: expected dtype bfloat16, float16 or float32, got {lib.dtype_repr(q)}")
    for x, n in ((k, kn), (v, vn)):
        if lib.dtype_name(x) != dtype:
            raise TypeError(f"{n}: expected dtype {dtype} (as {qn}), got {lib.dtype_repr(x)}")
    dev = lib.device(q)
    if dev[0] not in ("cpu", "cuda"):
        raise ValueError(f"{qn}: expected a CPU or CUDA tensor, got device {dev[0]}")
    for x, n in ((k, kn), (v, vn)):
        x_dev = lib.device(x)
        if x_dev != dev:
            raise ValueError(f"{n}: expected device {_dev_str(dev)} (as {qn}), got {_dev_str(x_dev)}")
    B, Lq, H, D = q_shape
    if k_shape[0] != B or k_shape[3] != D:
        raise ValueError(f"{kn}: expected shape (B, Lk, Hkv, D) with B = {B} and D = {D} as {qn}, got {k_shape}")
    if v_shape != k_shape:
        raise ValueError(f"{vn}: expected the shape of {kn} {k_shape}, got {v_shape}")
    if H % k_shape[2] != 0:
        raise ValueError(f"{kn}: expected a head count dividing {qn}'s {H} heads (GQA), got {k_shape[2]}")
    if dev[0] == "cuda":
        if dtype == "float32":
            raise TypeError(f"{qn}: expected bfloat16 or float16 on CUDA, got float32")
        if D not in (64, 128):
            raise ValueError(f"{qn}: expected head_dim 64 or 128 on CUDA, got {D}")
    elif D > 512:
        raise ValueError(f"{qn}: expected head_dim <= 512, got {D}")
    for x, n in ((q, qn), (k, kn), (v, vn)):
        if lib.lazily_negated(x):
            raise ValueError(f"{n}: expected a tensor without a pending negation (torch's lazy neg/conj bit); "
                             f"call .resolve_neg() first")
        if min(lib.strides(x)) < 0:
            raise ValueError(f"{n}: expected non-negative strides, got strides {lib.strides(x)} "
                             f"(call .copy() / numpy.ascontiguousarray)")
    if D != 1:
        for x, n in ((q, qn), (k, kn), (v, vn)):
            if lib.last_stride(x) != 1:
                raise ValueError(
                    f"{n}: expected a unit stride in the last (head_dim) dimension, got strides {lib.strides(x)} "
                    f"(call .contiguous() / numpy.ascontiguousarray)"
                )
    return dtype


_CHECKED: dict = {}  # (arrays' signature, criterion, cpu_tile) -> check_call's result
# Emptied at exit, before the interpreter tears the extension down: nanobind reports binding
# objects still alive at that point (the cached CallLayouts) as leaks.
atexit.register(_CHECKED.clear)


def check_call(lib: ArrayLib, q, k, v, criterion: str, cpu_tile=None, names=("query", "key", "value")):
    """check_qkv and the call's state key: (dtype name, StateKey, CallLayout or None). Calls repeat
    the same layouts (every layer of a model, every step), so a signature of everything check_qkv
    reads (each attribute read once, ~3 µs for torch tensors) that passed before skips the checks
    and the key's construction (~15 µs). Only passing signatures are kept. For them the binding's
    CallLayout (q, k, v and a contiguous out: shapes, strides, dtype, device) is built once too,
    so that a call passes data pointers instead of four DLPack tensors."""
    sig = lib.signature(q, k, v)
    if sig is not None:
        hit = _CHECKED.get((sig, criterion, cpu_tile))
        if hit is not None:
            return hit
    dtype = check_qkv(lib, q, k, v, names)
    layout = None
    if sig is not None:
        x = lib.export
        layout = _ext.CallLayout(x(q), x(k), x(v))
    result = (dtype, state_key(q.shape, k.shape, dtype, lib.device(q), criterion, cpu_tile), layout)
    if sig is not None:
        if len(_CHECKED) >= 256:
            _CHECKED.clear()
        _CHECKED[(sig, criterion, cpu_tile)] = result
    return result


# The kernels take scale * log2(e) as a float32: it must be finite, and scale must not round to 0.
_MAX_SCALE = float(np.finfo(np.float32).max) / math.log2(math.e) * (1 - 1e-7)


def check_scale(scale) -> Optional[float]:
    if scale is None:
        return None
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"scale: expected a positive number or None, got {scale!r}") from None
    if not (math.isfinite(s) and 0 < s <= _MAX_SCALE and np.float32(s) > 0):
        raise ValueError(f"scale: expected a positive number in float32's range (up to 2.3e38) or None "
                         f"(1/sqrt(head_dim)), got {scale!r}")
    return s


MAX_CPU_THREADS = 1024  # as the C++ core


def check_cpu_threads(cpu_threads) -> int:
    return check_integer(cpu_threads, "cpu_threads", 0, MAX_CPU_THREADS,
                         f"an integer from 0 (all cores) to {MAX_CPU_THREADS}")


def check_cpu_tile(cpu_tile) -> Optional[Tuple[int, int]]:
    """None, or (rows, cols) with 1 <= rows, cols <= 4096, as a tuple of ints."""
    if cpu_tile is None:
        return None
    what = "(rows, cols) with 1 <= rows, cols <= 4096"
    if isinstance(cpu_tile, (str, bytes)) or not hasattr(cpu_tile, "__len__") or len(cpu_tile) != 2:
        raise ValueError(f"cpu_tile: expected {what}, got {cpu_tile!r}")
    return tuple(check_integer(x, "cpu_tile", 1, 4096, what) for x in cpu_tile)


def _dev_str(dev) -> str:
    return "cpu" if dev[0] == "cpu" else f"{dev[0]}:{dev[1]}"


# --- state layout ---------------------------------------------------------------------------
@dataclass(frozen=True)
class StateKey:
    """Everything a skip mask's meaning depends on (C++ liteattn::StateKey)."""

    batch: int
    len_q: int
    heads: int
    head_dim: int
    len_k: int
    dtype: str
    device: Tuple[str, int]
    tile: Tuple[int, int]
    with_row_max: bool

    @property
    def q_tiles(self) -> int:
        return -(-self.len_q // self.tile[0])

    @property
    def k_tiles(self) -> int:
        return -(-self.len_k // self.tile[1])

    @property
    def words_per_row(self) -> int:
        return -(-self.k_tiles // 32)

    @property
    def rows(self) -> int:
        return self.batch * self.heads * self.q_tiles

    def sizes(self) -> dict:
        """Element counts of mask, row_visits, row_max, kept (as the C++ StateKey)."""
        return {
            "mask": 2 * self.rows * self.words_per_row,
            "row_visits": self.rows,
            "row_max": self.batch * self.heads * self.len_q if self.with_row_max else 0,
            # the counts, the kernel's work-tile counter, then its work order (one word per row)
            "kept": self.batch * self.heads + 1 + self.rows,
        }

    @property
    def nbytes(self) -> int:
        return 4 * sum(self.sizes().values())

    def describe(self) -> str:
        return (
            f"B={self.batch} H={self.heads} Lq={self.len_q} Lk={self.len_k} D={self.head_dim} {self.dtype} "
            f"on {_dev_str(self.device)} tiles {self.tile[0]}x{self.tile[1]}" + (" with row max" if self.with_row_max else "")
        )


_STATE_KEYS: dict = {}  # the arguments of state_key -> its StateKey (built once per layout)


def state_key(q_shape, k_shape, dtype: str, device, criterion: str, cpu_tile=None) -> StateKey:
    B, Lq, H, D = (int(s) for s in q_shape)
    Lk = int(k_shape[1])
    tile = tuple(cpu_tile) if (cpu_tile is not None and device[0] == "cpu") else None
    args = (B, Lq, H, D, Lk, dtype, tuple(device), tile, criterion == "previous")
    key = _STATE_KEYS.get(args)
    if key is None:  # a frozen dataclass costs ~10 µs to build: once per layout, not per call
        if len(_STATE_KEYS) >= 1024:
            _STATE_KEYS.clear()
        key = _STATE_KEYS[args] = StateKey(B, Lq, H, D, Lk, dtype, tuple(device), tile or tile_shape(D, dtype),
                                           criterion == "previous")
    return key


def state_layout(batch, len_q, heads, head_dim, len_k=None, dtype="bfloat16", device="cuda", criterion="running",
                 cpu_tile=None) -> dict:
    """The C++ core's StateKey for a call (sizes of the state buffers), as a dict."""
    dev = device if isinstance(device, tuple) else (str(device).split(":")[0], int(str(device).split(":")[1]) if ":" in str(device) else 0)
    return _ext.state_layout(batch, len_q, heads, head_dim, len_q if len_k is None else len_k, dtype, dev[0], dev[1],
                             criterion, None if cpu_tile is None else tuple(cpu_tile))


def state_buffers(key: StateKey, export, mask, row_visits, row_max, kept, cumulative=None):
    """The binding's StateBuffers for a state's arrays (export: their library's DLPack export);
    it checks each array against the key (count, dtype, device, contiguity) and holds them."""
    x = lambda a: None if a is None else export(a)  # noqa: E731
    return _ext.StateBuffers(key.batch, key.len_q, key.heads, key.head_dim, key.len_k, key.dtype, key.device[0],
                             key.device[1], "previous" if key.with_row_max else "running", key.tile, x(mask),
                             x(row_visits), x(row_max), x(kept), x(cumulative))


# --- skip state -----------------------------------------------------------------------------
# States holding a binding handle. Their handles are dropped at exit, before the interpreter tears
# the extension down: states that outlive the program's code (held by torch.compile's caches, for
# one) would otherwise be reported by nanobind as leaked StateBuffers.
_WITH_HANDLES: "weakref.WeakSet[SkipState]" = weakref.WeakSet()


@atexit.register
def _drop_handles() -> None:
    for state in list(_WITH_HANDLES):
        state._handle = None


@dataclass
class SkipStats:
    """Counts read from one skip state (method.md section 4)."""

    calls: int = 0  # calls that updated the state since its last reset
    tiles_per_head: int = 0  # B * nq * nk
    computed_per_head: List[int] = field(default_factory=list)  # last call
    planned_per_head: List[int] = field(default_factory=list)  # what the next call reads
    cumulative_computed_per_head: List[int] = field(default_factory=list)  # all calls since reset

    @property
    def heads(self) -> int:
        return len(self.computed_per_head)

    @property
    def sparsity(self) -> float:
        """Fraction of key tiles the last call skipped."""
        total = self.tiles_per_head * self.heads
        return 1.0 - sum(self.computed_per_head) / total if total and self.calls else 0.0

    @property
    def head_sparsity(self) -> List[float]:
        if not self.calls or not self.tiles_per_head:
            return [0.0] * self.heads
        return [1.0 - c / self.tiles_per_head for c in self.computed_per_head]

    @property
    def cumulative_sparsity(self) -> float:
        """Fraction of key tiles skipped over every call since the last reset."""
        total = self.tiles_per_head * self.heads * self.calls
        return 1.0 - sum(self.cumulative_computed_per_head) / total if total else 0.0

    @property
    def cumulative_head_sparsity(self) -> List[float]:
        total = self.tiles_per_head * self.calls
        return [1.0 - c / total if total else 0.0 for c in self.cumulative_computed_per_head]

    @property
    def next_sparsity(self) -> float:
        """Fraction of key tiles the next call's read mask skips (before must_do / must_skip)."""
        total = self.tiles_per_head * self.heads
        return 1.0 - sum(self.planned_per_head) / total if total else 0.0

    def to_dict(self) -> dict:
        """Plain numbers, for logs and JSON."""
        return {
            "calls": self.calls, "sparsity": self.sparsity, "head_sparsity": self.head_sparsity,
            "cumulative_sparsity": self.cumulative_sparsity, "cumulative_head_sparsity": self.cumulative_head_sparsity,
            "next_sparsity": self.next_sparsity, "tiles_per_head": self.tiles_per_head,
        }

    def __repr__(self):
        return (
            f"SkipStats(calls={self.calls}, sparsity={self.sparsity:.4f}, cumulative_sparsity="
            f"{self.cumulative_sparsity:.4f}, next_sparsity={self.next_sparsity:.4f}, heads={self.heads})"
        )


class SkipState:
    """One double-buffered skip state (method.md section 4), owned by the caller: one per
    (attention layer, CFG branch, KV split). Its buffers are arrays of the input's library, on the
    input's device: mask (2 * rows * words uint32), row_visits (rows), row_max (B*H*Lq float32,
    the 'previous' criterion only), kept (B*H counts, then the Hopper kernel's work-tile counter and
    work order: B*H + 1 + rows uint32) and cumulative (B*H int64 running totals of kept, for
    statistics: every call that updates the state adds to them in the same kernel)."""

    def __init__(self):
        self.key: Optional[StateKey] = None
        self.lib: Optional[ArrayLib] = None
        self.mask = self.row_visits = self.row_max = self.kept = self.cumulative = None
        self._handle = None  # the binding's StateBuffers over these arrays, built on first use

    @property
    def shaped(self) -> bool:
        return self.key is not None

    def buffers(self):
        return (self.mask, self.row_visits, self.row_max, self.kept)

    def __getstate__(self):
        # The binding's handle is neither picklable nor to be shared: a copy builds its own.
        return {**self.__dict__, "_handle": None}

    def handle(self):
        """The buffers as the binding takes them (checked against the key once, on first use)."""
        if self._handle is None:
            self._handle = state_buffers(self.key, self.lib.export, *self.buffers(), self.cumulative)
            _WITH_HANDLES.add(self)
        return self._handle

    @staticmethod
    def allocate(lib: ArrayLib, key: StateKey, like) -> "SkipState":
        s = SkipState()
        sizes = key.sizes()
        s.key, s.lib = key, lib
        s.mask = lib.empty_u32(sizes["mask"], like)
        s.row_visits = lib.empty_u32(sizes["row_visits"], like)
        s.kept = lib.empty_u32(sizes["kept"], like)
        s.row_max = lib.empty((sizes["row_max"],), "float32", like) if key.with_row_max else None
        s.cumulative = lib.zeros_i64(key.batch * key.heads, like)
        return s

    def adopt(self, other: "SkipState") -> None:
        self.key, self.lib = other.key, other.lib
        self.mask, self.row_visits, self.row_max, self.kept = other.buffers()
        self.cumulative, self._handle = other.cumulative, other._handle
        if self._handle is not None:
            _WITH_HANDLES.add(self)

    def clone(self) -> "SkipState":
        s = SkipState()
        if self.shaped:
            s.key, s.lib = self.key, self.lib
            c = self.lib.copy
            s.mask, s.row_visits, s.kept, s.cumulative = c(self.mask), c(self.row_visits), c(self.kept), c(self.cumulative)
            s.row_max = c(self.row_max) if self.row_max is not None else None
        return s

    def reset(self) -> None:
        """Re-initialises the buffers in place (all tiles computed, no visits)."""
        if not self.shaped:
            return
        lib = self.lib
        t = torch_lib()
        if t is not None and lib is t:
            _torch_ops().reset(self)
        else:
            _ext.reset_state(self.handle(), lib.stream(self.mask))
        self.cumulative[...] = 0

    def release(self) -> None:
        self.__init__()

    # --- inspection (copies to the host; not for the hot path) -----------------------------
    def read_mask(self, newest: bool = True) -> np.ndarray:
        """The mask the next call reads (newest=True) or the last call read, as a uint32 array of
        shape (B, H, q_tiles, words): bit j of a row set = key tile j computed."""
        k = self.key
        if k is None:
            return np.zeros((0,), np.uint32)
        both = self.lib.to_numpy(self.mask).view(np.uint32).reshape(2, k.rows, k.words_per_row)
        visits = self.lib.to_numpy(self.row_visits).view(np.uint32)
        parity = (visits & 1).astype(np.int64)
        pick = parity if newest else 1 - parity
        rows = both[pick, np.arange(k.rows)]
        return rows.reshape(k.batch, k.heads, k.q_tiles, k.words_per_row)

    def tile_mask(self, newest: bool = True) -> np.ndarray:
        """read_mask unpacked to booleans of shape (B, H, q_tiles, k_tiles)."""
        k = self.key
        words = self.read_mask(newest)
        bits = np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little")
        return bits[..., : k.k_tiles].astype(bool)

    def stats(self) -> SkipStats:
        k = self.key
        if k is None:
            return SkipStats()
        counts = k.batch * k.heads  # kept goes on with the work-tile counter and the work order
        kept = self.lib.to_numpy(self.kept[:counts]).view(np.uint32).astype(np.int64).reshape(k.batch, k.heads)
        cum = self.lib.to_numpy(self.cumulative).astype(np.int64).reshape(k.batch, k.heads)
        visits = self.lib.to_numpy(self.row_visits).view(np.uint32)
        planned = self.tile_mask(True).sum(axis=(0, 2, 3))
        return SkipStats(
            calls=int(visits[0]) if visits.size else 0,
            tiles_per_head=k.batch * k.q_tiles * k.k_tiles,
            computed_per_head=[int(x) for x in kept.sum(axis=0)],
            planned_per_head=[int(x) for x in planned],
            cumulative_computed_per_head=[int(x) for x in cum.sum(axis=0)],
        )


# --- the call ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CallOptions:
    """A call's options that stay fixed from step to step (the per-step skipping switch and
    threshold are run()'s own arguments). Frozen: LiteAttention reuses one per layout."""

    scale: Optional[float] = None
    criterion: str = "running"
    order: str = "alternate"
    must_do: Ranges = field(default_factory=list)
    must_skip: Ranges = field(default_factory=list)
    dense_queries: Ranges = field(default_factory=list)
    cpu_tile: Optional[Tuple[int, int]] = None
    cpu_threads: int = 0
    backend: str = "auto"  # one of BACKENDS


_TORCH_OPS = None


def _torch_ops():
    """The torch op layer, imported on first use (torch is optional); a module global after that,
    because a function-level import statement costs about a microsecond per call."""
    global _TORCH_OPS
    if _TORCH_OPS is None:
        from . import _torch_ops as ops

        _TORCH_OPS = ops
    return _TORCH_OPS


def run(lib: ArrayLib, q, k, v, state: Optional[SkipState], opts: CallOptions, enabled, threshold, return_lse: bool,
        checked):
    """Runs one attention call; returns (out, lse or None). checked: check_call's result for the
    arrays and opts.

    With a state, the call uses it: it reads and updates it when enabled, and leaves it alone
    otherwise (warm-up). On a new state key a fresh state is allocated and initialised inside the
    call, and replaces `state`'s buffers only when the call succeeds, so a rejected call leaves the
    state as it was. For torch inputs enabled / threshold may be 0-dim CPU tensors (so that
    torch.compile does not specialize on them)."""
    dtype, key, call_layout = checked
    candidate = None
    reset = False
    use = None
    if state is not None:
        if (state.key is not key and state.key != key) or state.lib is not lib:  # keys are cached: identity first
            candidate = SkipState.allocate(lib, key, q)
            reset = True
        use = candidate if candidate is not None else state
    t = torch_lib()
    if t is not None and lib is t:
        out, lse = _torch_ops().forward(q, k, v, use, opts, enabled, threshold, reset, return_lse, call_layout)
        if not return_lse:
            lse = None
    else:
        B, Lq, H, D = q.shape
        out = lib.empty(tuple(q.shape), dtype, q)
        lse = lib.empty((B, H, Lq), "float32", q) if return_lse else None
        x = lib.export
        _ext.forward(x(q), x(k), x(v), x(out), None if lse is None else x(lse), None if use is None else use.handle(),
                     opts.scale, bool(enabled), float(threshold), opts.criterion, opts.order, opts.must_do,
                     opts.must_skip, opts.dense_queries, opts.cpu_tile, opts.cpu_threads, opts.backend, lib.stream(q),
                     reset)
    if candidate is not None:
        state.adopt(candidate)
    return out, lse
