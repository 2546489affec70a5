"""lite_attention: temporal sparse attention for video diffusion transformers.

Drop-in for the upstream LiteAttention API over the liteattn C++ core (nanobind binding over
DLPack: the same module serves PyTorch, NumPy and CuPy arrays; no libtorch linkage).
"""
from __future__ import annotations

import importlib.util as _ilu
import numbers as _numbers
import os as _os


def _torch_installed() -> bool:
    try:
        return _ilu.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


# torch (when installed and wanted: LITE_ATTENTION_NO_TORCH=1 opts out) is imported before the
# extension loads, so that torch's libraries always come first in the process. An extension
# whose toolchain linked libstdc++ statically crashed a torch imported after it (the extension is
# also linked so that this cannot happen: python/CMakeLists.txt).
_WITH_TORCH = _torch_installed() and not _os.environ.get("LITE_ATTENTION_NO_TORCH")
if _WITH_TORCH:
    try:
        import torch as _torch  # noqa: F401
    except ImportError:  # a torch that cannot be imported: NumPy / CuPy still work
        _WITH_TORCH = False

from . import _ext
from ._core import SkipState, SkipStats, StateKey, state_layout
from .attention import LiteAttention, SeqParallelLiteAttention, find_lite_attention, reset_skip_states, set_step
from .calibrate import CalibrationResult, calibrate, relative_l1
from .functional import attention
from .merge import merge_attention
from .schedule import ThresholdSchedule
from .workload import VideoWorkload

__version__ = _ext.__version__
built_with_cuda: bool = _ext.built_with_cuda


def cuda_available() -> bool:
    """Whether this build has CUDA support and a CUDA device is present."""
    return _ext.cuda_available()


def available_backends(device=None):
    """Backends this build and this machine can run, e.g. ['cpu', 'sm90', 'sm80'] on a Hopper GPU
    ('sm90': the Hopper kernel, compute capability 9.0 only; 'sm80': the portable kernel, 8.0 and
    newer) or ['cpu', 'sm80'] on an Ampere or Ada GPU. Any of them (or 'auto') is a valid
    ``backend=`` of LiteAttention and attention() for inputs on the device it serves.

    device: None for every backend that serves at least one of the machine's devices, or one
    device ('cpu', 'cuda', 'cuda:1', a GPU index, or a torch.device) for the backends that serve
    it: ['cpu'] for the CPU, the GPU's kernels for a GPU ('cuda' alone means GPU 0)."""
    if device is None:
        return list(_ext.available_backends())
    return list(_ext.available_backends(_device_pair(device)))


def _device_pair(device):
    """(kind, index) of a device given as 'cpu', 'cuda', 'cuda:N', an int N (a GPU) or an object
    with .type and .index such as torch.device."""
    expected = "expected 'cpu', 'cuda', 'cuda:N', a GPU index or a torch.device"
    if isinstance(device, bool):
        raise TypeError(f"device: {expected}, got {device!r}")
    if isinstance(device, _numbers.Integral):  # int, NumPy integers
        return ("cuda", int(device))
    if hasattr(device, "type") and hasattr(device, "index"):
        return (str(device.type), 0 if device.index is None else int(device.index))
    if isinstance(device, str):
        kind, _, index = device.partition(":")
        if kind in ("cpu", "cuda") and (not index or (index.isdigit() and kind == "cuda")):
            return (kind, int(index) if index else 0)
    raise (ValueError if isinstance(device, str) else TypeError)(f"device: {expected}, got {device!r}")


# Register the torch.library ops up front when torch is imported, so that the first call inside
# torch.compile does not import and register them while tracing.
if _WITH_TORCH:
    try:
        from . import _torch_ops  # noqa: F401
    except ImportError:  # a torch without torch.library: NumPy / CuPy still work
        pass

__all__ = [
    "LiteAttention", "SeqParallelLiteAttention", "ThresholdSchedule", "merge_attention", "calibrate",
    "CalibrationResult", "relative_l1", "VideoWorkload", "SkipState", "SkipStats", "StateKey", "state_layout",
    "attention", "set_step", "reset_skip_states", "find_lite_attention", "cuda_available", "available_backends", "built_with_cuda", "__version__",
]
