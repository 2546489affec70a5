"""The upstream LiteAttention README's usage patterns, on NumPy arrays (torch in test_torch.py)."""
import numpy as np
import pytest

import lite_attention as la
from lite_attention import LiteAttention, SeqParallelLiteAttention
from conftest import randn, reference


def qkv(L=200, H=2, D=32, seed=0, B=1):
    return randn((B, L, H, D), seed), randn((B, L, H, D), seed + 1), randn((B, L, H, D), seed + 2)


def test_basic_substitution_block():
    class Block:  # as in the upstream README: one LiteAttention per layer
        def __init__(self):
            self.lite_attention = LiteAttention(enable_skipping=True)

        def forward(self, q, k, v, must_do_list=None):
            return self.lite_attention(q, k, v, must_do_list=must_do_list)

    q, k, v = qkv()
    blk = Block()
    out = blk.forward(q, k, v)
    assert out.shape == q.shape and out.dtype == q.dtype
    np.testing.assert_allclose(out, reference(q, k, v)[0], atol=2e-5)  # the first call is dense
    out2 = blk.forward(q, k, v, must_do_list=[2, 12, 40, 45, 60, 80])
    assert out2.shape == q.shape


def test_defaults_and_threshold_api():
    attn = LiteAttention()
    assert attn.threshold == -10.0 and attn.enable_skipping
    attn.set_threshold(-3)
    assert attn.threshold == -3.0
    attn.threshold = -5.0  # upstream scripts assign the attribute
    assert attn.threshold == -5.0
    with pytest.raises(ValueError, match="threshold"):
        attn.set_threshold(1.0)
    with pytest.raises(ValueError, match="threshold"):
        LiteAttention(threshold=0.5)
    assert LiteAttention(threshold=None).threshold == -10.0
    attn.set_threshold(0.0)  # 0 is allowed (skip tiles below the running max)


def test_return_softmax_lse():
    q, k, v = qkv(L=90)
    out, lse = LiteAttention()(q, k, v, return_softmax_lse=True)
    ref, ref_lse = reference(q, k, v)
    assert lse.shape == (1, 2, 90) and lse.dtype == np.float32
    np.testing.assert_allclose(lse, ref_lse, atol=2e-5)
    # custom scale
    out, lse = LiteAttention()(q, k, v, scale=0.3, return_softmax_lse=True)
    np.testing.assert_allclose(out, reference(q, k, v, scale=0.3)[0], atol=2e-5)


def test_must_do_and_must_skip_lists_flat_and_pairs():
    q, k, v = qkv(L=100)
    # upstream example: tokens 2-11, 40-44, 60-79 always computed; 80-99 always skipped
    flat = LiteAttention(cpu_tile=(10, 10))(q, k, v, must_do_list=[2, 12, 40, 45, 60, 80], must_skip_list=[80, 100])
    pairs = LiteAttention(cpu_tile=(10, 10))(q, k, v, must_do_list=[(2, 12), (40, 45), (60, 80)],
                                              must_skip_list=[(80, 100)])
    np.testing.assert_array_equal(flat, pairs)
    arr = LiteAttention(cpu_tile=(10, 10))(q, k, v, must_do_list=np.array([[2, 12], [40, 45], [60, 80]]),
                                            must_skip_list=np.array([80, 100]))
    np.testing.assert_array_equal(flat, arr)
    # must_skip: keys 80..99 never computed
    np.testing.assert_allclose(flat, reference(q[:, :], k[:, :80], v[:, :80])[0], atol=2e-5)


def test_calls_on_one_instance_never_reuse_another_calls_options():
    """One instance reuses a call's checked options for later calls of the same layout: calls
    with per-call ranges, another scale, or after a public attribute changed must not be served
    (or leave behind) stale options."""
    q, k, v = qkv(L=100)
    attn = LiteAttention(enable_skipping=False, cpu_tile=(10, 10))
    plain = reference(q, k, v)[0]
    np.testing.assert_allclose(attn(q, k, v), plain, atol=2e-5)
    np.testing.assert_allclose(attn(q, k, v, must_skip_list=[(80, 100)]), reference(q, k[:, :80], v[:, :80])[0],
                               atol=2e-5)
    np.testing.assert_allclose(attn(q, k, v), plain, atol=2e-5)  # the ranges were this call's only
    np.testing.assert_allclose(attn(q, k, v, scale=0.3), reference(q, k, v, scale=0.3)[0], atol=2e-5)
    np.testing.assert_allclose(attn(q, k, v), plain, atol=2e-5)
    # A different key length is another layout: its must-skip range is checked against it.
    with pytest.raises(ValueError, match="must_skip_list"):
        attn(q, k[:, :50], v[:, :50], must_skip_list=[(40, 60)])
    # cpu_tile is public: a new value must reach the next call (stale options would carry the
    # old tile into the binding, which then rejects the state made for the new one).
    skipping = LiteAttention(threshold=-1.0, cpu_tile=(10, 10))
    skipping(q, k, v)
    assert skipping.state().key.tile == (10, 10)
    skipping.cpu_tile = (20, 25)
    skipping(q, k, v)
    assert skipping.state().key.tile == (20, 25)
    # So is backend: a new value must reach the next call of a layout whose options are cached
    # (CPU arrays: 'sm80' is rejected naming backend, 'cpu' runs), and back again.
    calls = skipping.stats.calls
    for backend in ("sm80", "cpu", "sm90", "auto"):
        skipping.backend = backend
        if backend.startswith("sm"):
            with pytest.raises(ValueError, match=f"backend: expected 'cpu' for CPU tensors, got '{backend}'"):
                skipping(q, k, v)
        else:
            skipping(q, k, v)
            calls += 1
    assert skipping.stats.calls == calls and skipping.state().key.tile == (20, 25)
    # Another instance's options (same layout, same everything but backend) are not reused.
    with pytest.raises(ValueError, match="backend: expected 'cpu' for CPU tensors, got 'sm90'"):
        LiteAttention(threshold=-1.0, cpu_tile=(20, 25), backend="sm90")(q, k, v)


def test_must_do_keeps_tiles_that_threshold_would_skip():
    L = 128
    q, k, v = qkv(L=L, seed=4)
    q, k = q.copy(), k.copy()
    # Make the first key tile negligible for every query (descending order visits it last; the
    # first visited tile is always kept by the running criterion): a shared channel of q meets
    # a large negative entry in the keys of tile 0.
    q[..., 0] = 5.0
    k[..., 0] = 0.0
    k[:, :32, :, 0] = -10.0
    a = LiteAttention(threshold=-2.0, cpu_tile=(32, 32))
    b = LiteAttention(threshold=-2.0, cpu_tile=(32, 32))
    for _ in range(3):
        a(q, k, v)
        b(q, k, v, must_do_list=[10, 11])
    assert not a.state().tile_mask()[..., 0].any()
    assert b.state().tile_mask()[..., 0].all()


def test_enable_skip_optimization_runs_dense_and_keeps_state():
    q, k, v = qkv(L=160, seed=3)
    attn = LiteAttention(threshold=0.0, cpu_tile=(16, 16))
    attn(q, k, v)
    attn(q, k, v)
    before = attn.state().read_mask().copy()
    assert attn.stats.sparsity > 0
    attn.enable_skip_optimization(enable=False)
    out = attn(q, k, v)
    np.testing.assert_allclose(out, reference(q, k, v)[0], atol=2e-5)
    np.testing.assert_array_equal(attn.state().read_mask(), before)
    attn.enable_skip_optimization(True)
    attn(q, k, v)
    assert attn.stats.sparsity > 0


def test_reset_skip_state():
    q, k, v = qkv(L=160, seed=3)
    attn = LiteAttention(threshold=0.0, cpu_tile=(16, 16))
    attn(q, k, v)
    attn(q, k, v)
    assert attn.stats.next_sparsity > 0 and attn.step == 1
    attn.reset_skip_state()
    assert attn.stats.calls == 0 and attn.stats.next_sparsity == 0 and attn.step == 0
    out = attn(q, k, v)
    np.testing.assert_allclose(out, reference(q, k, v)[0], atol=2e-5)  # dense again after the reset


def test_state_resets_when_the_shape_changes():
    attn = LiteAttention(threshold=0.0, cpu_tile=(16, 16))
    q, k, v = qkv(L=160, seed=3)
    attn(q, k, v)
    attn(q, k, v)
    assert attn.stats.next_sparsity > 0
    for q2, k2, v2 in [qkv(L=150), qkv(L=160, H=4), qkv(L=160, D=16), qkv(L=160, B=2),
                       tuple(x.astype(np.float16) for x in qkv(L=160))]:
        out = attn(q2, k2, v2)  # a new key: the state starts over, so this call is dense
        np.testing.assert_allclose(out.astype(np.float32), reference(q2, k2, v2)[0], atol=3e-3)
        assert attn.stats.calls == 1


def test_use_int8_warns_and_other_upstream_kwargs_are_accepted():
    with pytest.warns(RuntimeWarning, match="INT8"):
        attn = LiteAttention(enable_skipping=True, use_int8=True)
    LiteAttention(enable_skipping=True, threshold=-10.0, max_batch_size=2, reverse_skip_list=True)
    q, k, v = qkv(L=64)
    assert attn(q, k, v).shape == q.shape


def test_seq_parallel_upstream_call_and_merge():
    q, k, v = qkv(L=240, seed=7)
    n = 3
    attn = SeqParallelLiteAttention(num_nodes=n, enable_skipping=True)
    assert attn.num_nodes == n
    bounds = [0, 80, 160, 240]
    outs, lses = [], []
    for split_idx in range(n):
        o, l = attn(q, k[:, bounds[split_idx]:bounds[split_idx + 1]], v[:, bounds[split_idx]:bounds[split_idx + 1]],
                    split_idx, None, return_softmax_lse=True)
        outs.append(o)
        lses.append(l)
    merged = la.merge_attention(outs, lses)
    np.testing.assert_allclose(merged, reference(q, k, v)[0], atol=3e-5)
    np.testing.assert_allclose(attn.all_splits(q, k, v), merged, atol=1e-6)
    assert len(attn.branches) == n  # one state per split
    with pytest.raises(ValueError, match="split_idx"):
        attn(q, k, v, n)
    assert SeqParallelLiteAttention(num_splits=2).num_splits == 2


def test_seq_parallel_positional_arguments_are_upstreams():
    # Upstream: SeqParallelLiteAttention(num_nodes, enable_skipping, threshold, max_batch_size).
    attn = SeqParallelLiteAttention(4, True, -6.0, 2)
    assert attn.num_nodes == 4 and attn.enable_skipping and attn.threshold == -6.0


def test_seq_parallel_state_and_reset_by_branch_name():
    q, k, v = qkv(L=160, seed=3)
    attn = SeqParallelLiteAttention(2, threshold=0.0, cpu_tile=(16, 16))
    for _ in range(2):
        for branch in ("cond", "uncond"):
            attn(q, k[:, :80], v[:, :80], 0, branch=branch)
            attn(q, k[:, 80:], v[:, 80:], 1, branch=branch)
    assert attn.state("cond") is attn.state("cond", 0) and attn.state("cond", 1) is not None
    assert all(attn.stats_for(b, i).next_sparsity > 0 for b in ("cond", "uncond") for i in (0, 1))
    attn.reset_skip_state("cond")  # every split of that branch, and nothing else
    assert all(attn.stats_for("cond", i).calls == 0 for i in (0, 1))
    assert all(attn.stats_for("uncond", i).next_sparsity > 0 for i in (0, 1))
    attn.reset_skip_state("uncond", 1)  # one split
    assert attn.stats_for("uncond", 1).calls == 0 and attn.stats_for("uncond", 0).calls == 2


def test_works_without_torch():
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, lite_attention as la\n"
            "q = np.random.default_rng(0).standard_normal((1, 64, 2, 16)).astype(np.float32)\n"
            "a = la.LiteAttention(threshold=-1.0, cpu_tile=(16, 16), schedule=la.ThresholdSchedule([-2.0], 1))\n"
            "for _ in range(3): a(q, q, q)\n"
            "assert a.step == 2 and a.stats.calls == 2, (a.step, a.stats)\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_dense_queries_keep_their_rows_dense():
    q, k, v = qkv(L=160, seed=3)
    attn = LiteAttention(threshold=0.0, cpu_tile=(16, 16), dense_queries=[(0, 32)])
    for _ in range(3):
        attn(q, k, v)
    mask = attn.state().tile_mask()
    assert mask[:, :, :2].all()  # query tiles 0 and 1 run dense and keep every tile
    assert not mask[:, :, 2:].all()
    # per call override
    attn2 = LiteAttention(threshold=0.0, cpu_tile=(16, 16))
    for _ in range(3):
        attn2(q, k, v, dense_queries=[(0, 32)])
    np.testing.assert_array_equal(attn2.state().read_mask(), attn.state().read_mask())
