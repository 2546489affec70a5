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
