"""Array-library adapters: NumPy, PyTorch and CuPy (anything else with DLPack is rejected with a
clear TypeError). Each adapter allocates outputs and skip-state buffers with the input's own
library, on the input's device, and knows which CUDA stream a call should run on.

The binding (``_ext``) only ever sees views of these arrays; it never allocates.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

# dtype names as the C++ core spells them
F32, BF16, F16 = "float32", "bfloat16", "float16"


class ArrayLib:
    name = "?"

    def __reduce__(self):
        # One adapter per library: copies and pickles of states resolve to it, so a copied state
        # still matches calls on its library (SkipState compares adapters by identity).
        return (library_named, (self.name,))

    def owns(self, x: Any) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    # --- description -------------------------------------------------------------------
    def dtype_name(self, x) -> str | None:
        """float32 / bfloat16 / float16, or None for any other dtype."""
        raise NotImplementedError

    def dtype_repr(self, x) -> str:
        return str(x.dtype)

    def device(self, x) -> tuple[str, int]:
        """('cpu', 0) or ('cuda', ordinal)."""
        raise NotImplementedError

    def strides(self, x) -> tuple[int, ...]:
        """Strides in elements."""
        raise NotImplementedError

    def last_stride(self, x) -> int:
        """The stride of the last dimension, in elements."""
        return self.strides(x)[-1]

    def lazily_negated(self, x) -> bool:
        """Whether x's memory holds the negation of its values (torch's lazy neg / conj bits),
        which the binding would read as the values themselves."""
        return False

    def signature(self, q, k, v):
        """A hashable value that determines everything check_qkv reads of q, k, v, or None when
        this library's calls are not worth caching (see _core.check_call)."""
        return None

    # --- allocation on x's device --------------------------------------------------------
    def empty(self, shape, dtype: str, like): raise NotImplementedError
    def empty_u32(self, n: int, like): raise NotImplementedError
    def zeros_i64(self, n: int, like): raise NotImplementedError

    # --- misc -------------------------------------------------------------------------
    def stream(self, x) -> int:
        """The CUDA stream handle a call on x runs on (0 for CPU arrays)."""
        return 0

    def export(self, x):
        """What the binding receives for x (the array itself, or a DLPack capsule)."""
        return x

    def to_numpy(self, x) -> np.ndarray:
        raise NotImplementedError

    def copy(self, x):
        return x.copy()

    def cast(self, x, dtype: str):
        raise NotImplementedError


def _numpy_dtype_name(d):
    """The binding's dtype name of a NumPy dtype, or None when unsupported."""
    if d == np.float32:
        return F32
    if d == np.float16:
        return F16
    if d.name == "bfloat16":  # ml_dtypes.bfloat16 (exported as its uint16 bits: NumpyLib.export)
        return BF16
    return None


class NumpyLib(ArrayLib):
    name = "numpy"

    def owns(self, x):
        return isinstance(x, np.ndarray)

    def dtype_name(self, x):
        return _numpy_dtype_name(x.dtype)

    def device(self, x):
        return ("cpu", 0)

    def export(self, x):
        # NumPy's DLPack export refuses ml_dtypes.bfloat16; the binding reads a uint16 view of
        # the same memory as bfloat16 (genuine uint16 inputs were rejected by dtype_name).
        if x.dtype.name == "bfloat16":
            return x.view(np.uint16)
        return x

    def strides(self, x):
        return tuple(s // x.itemsize for s in x.strides)

    def _np_dtype(self, dtype):
        if dtype == BF16:
            import ml_dtypes  # only reached when the input already was ml_dtypes.bfloat16

            return ml_dtypes.bfloat16
        return np.dtype(dtype)

    def empty(self, shape, dtype, like):
        return np.empty(shape, dtype=self._np_dtype(dtype))

    def empty_u32(self, n, like):
        return np.empty(n, dtype=np.uint32)

    def zeros_i64(self, n, like):
        return np.zeros(n, dtype=np.int64)

    def to_numpy(self, x):
        return x

    def cast(self, x, dtype):
        return x.astype(self._np_dtype(dtype))


class TorchLib(ArrayLib):
    name = "torch"

    def __init__(self):
        import torch

        self.torch = torch
        self._dtypes = {torch.float32: F32, torch.bfloat16: BF16, torch.float16: F16}
        self._back = {v: k for k, v in self._dtypes.items()}

    def owns(self, x):
        return isinstance(x, self.torch.Tensor)

    def dtype_name(self, x):
        return self._dtypes.get(x.dtype)

    def device(self, x):
        if x.is_cuda:  # is_cuda and get_device() cost a fifth of device.type (this runs per call)
            return ("cuda", x.get_device())
        d = x.device
        return (d.type, d.index or 0)

    def strides(self, x):
        return tuple(x.stride())

    def last_stride(self, x):
        return x.stride(-1)

    def signature(self, q, k, v):
        # Exact tensors only (a subclass may answer these reads differently), and not while
        # torch.compile traces (shapes may be symbolic; the trace checks once anyway).
        # is_cuda, is_cpu and get_device() tell CPU, each CUDA device and any other device apart
        # (another accelerator's index alone would read like a CUDA device's), at a fifth of the
        # cost of .device; stride() is cheaper than stride(-1).
        t = self.torch.Tensor
        if type(q) is not t or type(k) is not t or type(v) is not t or self.torch.compiler.is_compiling():
            return None
        return (q.shape, k.shape, v.shape, q.dtype, k.dtype, v.dtype, q.is_cuda, k.is_cuda, v.is_cuda, q.is_cpu,
                k.is_cpu, v.is_cpu, q.get_device(), k.get_device(), v.get_device(), q.stride(), k.stride(), v.stride(),
                q.is_neg(), k.is_neg(), v.is_neg())

    def lazily_negated(self, x):
        # While torch.compile traces, the op's implementation checks the real tensors instead.
        return not self.torch.compiler.is_compiling() and (x.is_neg() or x.is_conj())

    # State buffers are made outside inference mode: they are updated in place by every later
    # call, and torch forbids in-place updates of inference tensors outside inference mode.
    def empty(self, shape, dtype, like):
        with self.torch.inference_mode(False):
            return self.torch.empty(shape, dtype=self._back[dtype], device=like.device)

    def empty_u32(self, n, like):
        # int32 carries the same bits as the core's uint32 and has full operator support in torch.
        with self.torch.inference_mode(False):
            return self.torch.empty(n, dtype=self.torch.int32, device=like.device)

    def zeros_i64(self, n, like):
        with self.torch.inference_mode(False):
            return self.torch.zeros(n, dtype=self.torch.int64, device=like.device)

    def stream(self, x):
        if x.device.type == "cuda":
            return int(self.torch.cuda.current_stream(x.device).cuda_stream)
        return 0

    def export(self, x):
        # A plain DLPack capsule: Tensor.__dlpack__() without a stream argument would make the
        # legacy default stream wait on the current one, which is illegal during CUDA graph
        # capture. Calls run on the stream passed explicitly instead.
        return self.torch.utils.dlpack.to_dlpack(x)

    def to_numpy(self, x):
        x = x.detach().cpu()
        if x.dtype == self.torch.bfloat16:  # NumPy has no bfloat16: widen exactly to float32
            x = x.float()
        return x.numpy()

    def copy(self, x):
        return x.clone()

    def cast(self, x, dtype):
        return x.to(self._back[dtype])


class CupyLib(ArrayLib):
    name = "cupy"

    def __init__(self):
        import cupy

        self.cp = cupy

    def owns(self, x):
        return isinstance(x, self.cp.ndarray)

    def dtype_name(self, x):
        return _numpy_dtype_name(x.dtype)  # CuPy uses NumPy's dtypes

    def device(self, x):
        return ("cuda", int(x.device.id))

    def strides(self, x):
        return tuple(s // x.itemsize for s in x.strides)

    def empty(self, shape, dtype, like):
        with like.device:
            return self.cp.empty(shape, dtype=np.dtype(dtype))

    def empty_u32(self, n, like):
        with like.device:
            return self.cp.empty(n, dtype=self.cp.uint32)

    def zeros_i64(self, n, like):
        with like.device:
            return self.cp.zeros(n, dtype=self.cp.int64)

    def stream(self, x):
        # CuPy keeps a current stream per device: the one of x's device, which need not be the
        # current device (a stream of another device cannot run x's kernels).
        with x.device:
            return int(self.cp.cuda.get_current_stream().ptr)

    def export(self, x):
        # stream=-1: no synchronization (the DLPack protocol's value for it); calls run on the
        # stream passed explicitly (see TorchLib.export). toDlpack() is deprecated in CuPy 14.
        return x.__dlpack__(stream=-1)

    def to_numpy(self, x):
        return self.cp.asnumpy(x)

    def cast(self, x, dtype):
        return x.astype(np.dtype(dtype))


_NUMPY = NumpyLib()
_torch_lib: TorchLib | None = None
_cupy_lib: CupyLib | None = None


def torch_lib() -> TorchLib | None:
    global _torch_lib
    if _torch_lib is None and sys.modules.get("torch") is not None:
        _torch_lib = TorchLib()
    return _torch_lib


def cupy_lib() -> CupyLib:
    """The CuPy adapter (CuPy must be imported)."""
    global _cupy_lib
    if _cupy_lib is None:
        _cupy_lib = CupyLib()
    return _cupy_lib


def library_named(name: str) -> ArrayLib:
    """The adapter of the library called name ('numpy', 'torch', 'cupy'), importing it."""
    if name == "numpy":
        return _NUMPY
    if name == "torch":
        import torch  # noqa: F401  (an unpickled torch state needs torch loaded)

        return torch_lib()
    if name == "cupy":
        import cupy  # noqa: F401

        return cupy_lib()
    raise ValueError(f"library: expected 'numpy', 'torch' or 'cupy', got {name!r}")


def lib_of(x: Any, name: str = "query") -> ArrayLib:
    """The adapter for x's array library; TypeError for anything else."""
    if isinstance(x, np.ndarray):
        return _NUMPY
    t = torch_lib()
    if t is not None and t.owns(x):
        return t
    if sys.modules.get("cupy") is not None and cupy_lib().owns(x):
        return cupy_lib()
    raise TypeError(
        f"{name}: expected a torch.Tensor, numpy.ndarray or cupy.ndarray of shape (B, L, H, D), "
        f"got {type(x).__module__}.{type(x).__qualname__}"
    )
