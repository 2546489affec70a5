"""CuPy arrays on the GPU: the same module, output of the input's kind (marked gpu)."""
import numpy as np
import pytest

import lite_attention as la
from conftest import randn

pytestmark = pytest.mark.gpu


def test_cupy_matches_cpu_reference():
    cp = pytest.importorskip("cupy")
    base = randn((1, 1000, 4, 128), 0)
    gpu = la.LiteAttention(threshold=-2.0)
    cpu = la.LiteAttention(threshold=-2.0)
    for step in range(3):
        x = (base + 0.05 * randn(base.shape, 10 + step)).astype(np.float16)
        out = gpu(cp.asarray(x), cp.asarray(x), cp.asarray(x))
        ref = cpu(x, x, x)
        assert isinstance(out, cp.ndarray) and out.dtype == np.float16
        np.testing.assert_allclose(cp.asnumpy(out).astype(np.float32), ref.astype(np.float32), atol=2e-2)
    assert isinstance(gpu.state().mask, cp.ndarray)
    assert abs(gpu.stats.sparsity - cpu.stats.sparsity) < 0.02


def test_cupy_arrays_on_a_gpu_that_is_not_current():
    """Arrays on GPU 1 while GPU 0 is current, with a stream of its own current on GPU 0: the call
    runs on GPU 1's current stream and gives the bytes of the same calls on GPU 0."""
    cp = pytest.importorskip("cupy")
    try:
        if not {"sm90", "sm80"} & set(la.available_backends(1)):
            pytest.skip("GPU 1 runs no liteattn kernel")
    except ValueError:
        pytest.skip("needs two GPUs")
    base = randn((1, 1000, 4, 128), 0)
    on_first = la.LiteAttention(threshold=-2.0)
    on_second = la.LiteAttention(threshold=-2.0)
    with cp.cuda.Device(0), cp.cuda.Stream(non_blocking=True):
        for step in range(3):
            x = (base + 0.05 * randn(base.shape, 10 + step)).astype(np.float16)
            first = on_first(cp.asarray(x), cp.asarray(x), cp.asarray(x))
            with cp.cuda.Device(1):
                x1 = cp.asarray(x)
            second = on_second(x1, x1, x1)
            assert second.device.id == 1 and cp.cuda.Device().id == 0
            np.testing.assert_array_equal(cp.asnumpy(first), cp.asnumpy(second))
            assert on_second.stats.sparsity == on_first.stats.sparsity
    assert on_second.stats.cumulative_sparsity > 0
