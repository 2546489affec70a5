"""lite_attention: temporal sparse attention for video diffusion transformers.

Drop-in for the upstream LiteAttention API over the liteattn C++ core (nanobind binding over
DLPack: the same module serves PyTorch, NumPy and CuPy arrays; no libtorch linkage).
"""
from __future__ import annotations

import importlib.util as _ilu
import os as _os

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


def available_backends():
    """Backends this build and this machine can run, e.g. ['cpu', 'sm90', 'sm80'] on a Hopper GPU
    ('sm90': the Hopper kernel, compute capability 9.0 only; 'sm80': the portable kernel, 8.0 and
    newer) or ['cpu', 'sm80'] on an Ampere or Ada GPU. Any of them (or 'auto') is a valid
    ``backend=`` of LiteAttention and attention() for inputs on the device it serves."""
    return list(_ext.available_backends())


# Register the torch.library ops up front when torch is installed, so that the first call inside
# torch.compile does not import and register them while tracing. LITE_ATTENTION_NO_TORCH=1 skips it.
def _torch_installed() -> bool:
    try:
        return _ilu.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


if _torch_installed() and not _os.environ.get("LITE_ATTENTION_NO_TORCH"):
    try:
        from . import _torch_ops  # noqa: F401
    except ImportError:  # a torch that cannot be imported: NumPy / CuPy still work
        pass

__all__ = [
    "LiteAttention", "SeqParallelLiteAttention", "ThresholdSchedule", "merge_attention", "calibrate",
    "CalibrationResult", "relative_l1", "VideoWorkload", "SkipState", "SkipStats", "StateKey", "state_layout",
    "attention", "set_step", "reset_skip_states", "find_lite_attention", "cuda_available", "available_backends", "built_with_cuda", "__version__",
]
