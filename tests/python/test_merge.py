"""merge_attention: partial results over disjoint key sets merge into full attention."""
import numpy as np
import pytest

import lite_attention as la
from conftest import HAS_TORCH, randn, reference


def parts(q, k, v, bounds):
    outs, lses = [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        o, l = la.attention(q, k[:, a:b], v[:, a:b], return_lse=True)
        outs.append(o)
        lses.append(l)
    return outs, lses


def test_merge_equals_full_attention():
    q, k, v = randn((2, 70, 3, 16), 1), randn((2, 130, 3, 16), 2), randn((2, 130, 3, 16), 3)
    outs, lses = parts(q, k, v, [0, 31, 90, 130])
    out, lse = la.merge_attention(outs, lses, return_lse=True)
    ref, ref_lse = reference(q, k, v)
    np.testing.assert_allclose(out, ref, atol=3e-5)
    np.testing.assert_allclose(lse, ref_lse, atol=3e-5)


def test_merge_drops_minus_inf_parts():
    q, k, v = randn((1, 20, 1, 8), 1), randn((1, 40, 1, 8), 2), randn((1, 40, 1, 8), 3)
    outs, lses = parts(q, k, v, [0, 20, 40])
    empty_out = np.zeros_like(outs[0])
    empty_lse = np.full_like(lses[0], -np.inf)
    out, lse = la.merge_attention(outs + [empty_out], lses + [empty_lse], return_lse=True)
    np.testing.assert_allclose(out, reference(q, k, v)[0], atol=3e-5)
    out, lse = la.merge_attention([empty_out, empty_out], [empty_lse, empty_lse], return_lse=True)
    assert np.all(out == 0) and np.all(lse == -np.inf)


def test_merge_errors():
    q, k, v = randn((1, 20, 1, 8), 1), randn((1, 40, 1, 8), 2), randn((1, 40, 1, 8), 3)
    outs, lses = parts(q, k, v, [0, 20, 40])
    with pytest.raises(ValueError, match="lses"):
        la.merge_attention(outs, lses[:1])
    with pytest.raises(ValueError, match="outs"):
        la.merge_attention([], [])
    with pytest.raises(ValueError, match=r"lses\[1\]"):
        la.merge_attention(outs, [lses[0], lses[1][:, :, :5]])
    with pytest.raises(TypeError, match=r"lses\[0\]"):
        la.merge_attention(outs, [lses[0].astype(np.float16), lses[1]])


def test_merge_bfloat16_numpy_parts():
    # LiteAttention returns ml_dtypes.bfloat16 arrays for bfloat16 NumPy inputs: merge takes them too.
    ml = pytest.importorskip("ml_dtypes")
    q, k, v = (randn((1, 20, 2, 8), s).astype(ml.bfloat16) for s in (1, 2, 3))
    attn = la.SeqParallelLiteAttention(2, cpu_tile=(16, 16))
    merged = attn.all_splits(q, k, v)
    assert merged.dtype == ml.bfloat16
    f32 = lambda x: x.astype(np.float32)  # noqa: E731
    np.testing.assert_allclose(f32(merged), reference(f32(q), f32(k), f32(v))[0], atol=2e-2)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_torch_merge_matches_core():
    import torch

    q, k, v = randn((1, 50, 2, 16), 1), randn((1, 80, 2, 16), 2), randn((1, 80, 2, 16), 3)
    outs, lses = parts(q, k, v, [0, 30, 80])
    ref, ref_lse = la.merge_attention(outs, lses, return_lse=True)
    out, lse = la.merge_attention([torch.from_numpy(o) for o in outs], [torch.from_numpy(l) for l in lses],
                                  return_lse=True)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(lse.numpy(), ref_lse, atol=1e-6)
