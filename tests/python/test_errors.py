"""Bad input gets a TypeError / ValueError naming the argument and what was expected, and a
rejected call leaves the skip state (and the step) as they were."""
import numpy as np
import pytest

import lite_attention as la
from lite_attention import LiteAttention
from conftest import randn

Q = randn((1, 64, 2, 32), 1)


def call(*args, **kwargs):
    return LiteAttention(cpu_tile=(16, 16))(*args, **kwargs)


@pytest.mark.parametrize("args,exc,pattern", [
    ((Q.tolist(), Q, Q), TypeError, r"query: expected a torch.Tensor, numpy.ndarray or cupy.ndarray"),
    ((Q, "k", Q), TypeError, r"key: expected a numpy array"),
    ((Q[0], Q, Q), ValueError, r"query: expected rank 4 \(batch, seq_len, heads, head_dim\), got shape \(64, 2, 32\)"),
    ((Q.astype(np.float64), Q, Q), TypeError, r"query: expected dtype bfloat16, float16 or float32, got float64"),
    ((Q.astype(np.int32), Q, Q), TypeError, r"query: expected dtype"),
    # uint16 is how bfloat16 NumPy arrays reach the binding: a real uint16 input must not.
    ((Q.astype(np.uint16), Q.astype(np.uint16), Q.astype(np.uint16)), TypeError, r"query: expected dtype.*got uint16"),
    ((Q, Q.astype(np.float16), Q), TypeError, r"key: expected dtype float32 \(as query\), got float16"),
    ((Q, Q[..., :16], Q[..., :16]), ValueError, r"key: expected shape \(B, Lk, Hkv, D\) with B = 1 and D = 32"),
    ((Q, Q, Q[:, :10]), ValueError, r"value: expected the shape of key"),
    ((np.concatenate([Q, Q[:, :, :1]], 2), Q, Q), ValueError, r"key: expected a head count dividing query's 3 heads"),
    ((randn((1, 8, 1, 600)),) * 3, ValueError, r"query: expected head_dim <= 512, got 600"),
    ((Q[..., ::2], Q[..., ::2], Q[..., ::2]), ValueError, r"query: expected a unit stride in the last \(head_dim\)"),
    ((Q[:, :0], Q, Q), ValueError, r"query: expected every dimension >= 1 .* got shape \(1, 0, 2, 32\)"),
    ((Q[:, ::-1], Q, Q), ValueError, r"query: expected non-negative strides, got strides \(4096, -64, 32, 1\)"),
])
def test_tensor_errors(args, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(*args)


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(must_do_list=[5]), ValueError, r"must_do_list: a flat range list needs an even number"),
    (dict(must_do_list=[5, 3]), ValueError, r"must_do_list: range 0 \[5, 3\) must satisfy 0 <= start < end <= key seq_len = 64"),
    (dict(must_do_list=[0, 70]), ValueError, r"must_do_list: range 0 \[0, 70\) must satisfy"),
    (dict(must_do_list=[(10, 20), (15, 30)]), ValueError, r"must_do_list: range 1 \[15, 30\) must be ascending and not overlap"),
    (dict(must_do_list=[(10, 20), 30]), TypeError, r"must_do_list: mixes pairs and plain integers"),
    (dict(must_do_list=[(1, 2, 3)]), ValueError, r"must_do_list: range 0 must be a pair"),
    (dict(must_do_list=[1.5, 3]), TypeError, r"must_do_list: expected integer token positions"),
    (dict(must_do_list=[True, 3]), TypeError, r"must_do_list: expected integer token positions, got True"),
    (dict(must_do_list="0,10"), TypeError, r"must_do_list: expected ranges as \[\(start, end\), ...\]"),
    (dict(must_skip_list=[(-1, 5)]), ValueError, r"must_skip_list: range 0 \[-1, 5\)"),
    (dict(must_do_list=[0, 10], must_skip_list=[5, 20]), ValueError, r"must_skip_list: range \[5, 20\) overlaps must_do_list"),
    (dict(scale=-1.0), ValueError, r"scale: expected a positive number in float32's range"),
    (dict(scale="big"), TypeError, r"scale: expected a positive number"),
    # Beyond float32 (the kernels' scale * log2(e)): named here, not as "got inf" / "got 0" later.
    (dict(scale=1e300), ValueError, r"scale: expected a positive number in float32's range"),
    (dict(scale=1e-300), ValueError, r"scale: expected a positive number in float32's range"),
    (dict(branch=["cond"]), TypeError, r"branch: expected a hashable name"),
    (dict(branch=("cond", [1])), TypeError, r"branch: expected a hashable name"),
])
def test_argument_errors(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(Q, Q, Q, **kwargs)


@pytest.mark.parametrize("ctor,exc,pattern", [
    (dict(threshold=3.0), ValueError, r"threshold: expected a number <= 0 in log2 units"),
    (dict(threshold=float("nan")), ValueError, r"threshold"),
    (dict(threshold="low"), TypeError, r"threshold"),
    (dict(criterion="max"), ValueError, r"criterion: expected one of 'running', 'previous', got 'max'"),
    (dict(order="random"), ValueError, r"order: expected one of 'descending', 'alternate', 'diagonal_first'"),
    (dict(backend="sm70"), ValueError, r"backend: expected one of 'auto', 'cpu', 'sm90', 'sm80', got 'sm70'"),
    (dict(cpu_tile=(0, 16)), ValueError, r"cpu_tile"),
    (dict(cpu_tile=5), ValueError, r"cpu_tile: expected \(rows, cols\)"),
    (dict(cpu_tile=(16.0, 16)), TypeError, r"cpu_tile: expected \(rows, cols\)"),
    (dict(cpu_threads=-1), ValueError, r"cpu_threads"),
    (dict(cpu_threads="x"), TypeError, r"cpu_threads: expected an integer"),
    (dict(cpu_threads=100000), ValueError, r"cpu_threads: expected an integer from 0 \(all cores\) to 1024"),
    (dict(schedule=[-1.0]), TypeError, r"schedule: expected a ThresholdSchedule"),
])
def test_constructor_errors(ctor, exc, pattern):
    with pytest.raises(exc, match=pattern):
        LiteAttention(**ctor)


def test_numpy_integers_are_integers():
    attn = LiteAttention(cpu_tile=(np.int64(16), np.int32(16)), cpu_threads=np.int64(2))
    assert attn.cpu_tile == (16, 16) and type(attn.cpu_tile[0]) is int and attn.cpu_threads == 2


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(cpu_tile=(0, 4)), ValueError, r"cpu_tile: expected \(rows, cols\) with 1 <= rows, cols <= 4096"),
    (dict(cpu_tile=5), ValueError, r"cpu_tile"),
    (dict(cpu_threads="x"), TypeError, r"cpu_threads"),
    (dict(threshold=None), TypeError, r"threshold: expected a number <= 0"),
    (dict(threshold=1.0), ValueError, r"threshold: expected a number <= 0"),
])
def test_functional_attention_errors(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        la.attention(Q, Q, Q, la.SkipState(), **kwargs)


@pytest.mark.parametrize("kwargs,argument", [
    (dict(cpu_tile=(0, 4)), "cpu_tile"), (dict(cpu_tile=(4, 0)), "cpu_tile"), (dict(batch=-1), "batch"),
    (dict(len_k=0), "len_k"), (dict(heads=2**31), "heads"),
])
def test_state_layout_errors_name_the_argument(kwargs, argument):
    # (Once a SIGFPE: a zero tile reached the key's tile arithmetic.)
    args = dict(batch=1, len_q=100, heads=2, head_dim=64, device="cpu")
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{argument}: "):
        la.state_layout(**args)


def test_rejected_call_leaves_state_and_step_as_they_were():
    attn = LiteAttention(threshold=0.0, cpu_tile=(16, 16))
    q = randn((1, 64, 2, 32), 2)
    attn(q, q, q)
    attn(q, q, q)
    st = attn.state()
    before = [b.copy() for b in (st.mask, st.row_visits, st.kept, st.cumulative)]
    step = attn.step
    bad_calls = [
        lambda: attn(q, q, q, must_do_list=[0, 100]),
        lambda: attn(q[..., :16], q, q),
        lambda: attn(q.astype(np.float64), q, q),
        lambda: attn(randn((1, 80, 2, 32)), q, q, must_skip_list=[70, 90]),  # new key, rejected
        lambda: attn(q, q, q, scale=float("inf")),
    ]
    for bad in bad_calls:
        with pytest.raises((TypeError, ValueError)):
            bad()
        assert attn.state() is st and st.key.len_q == 64
        for b, a in zip(before, (st.mask, st.row_visits, st.kept, st.cumulative)):
            np.testing.assert_array_equal(a, b)
        assert attn.step == step


def test_core_errors_are_mapped():
    q = randn((1, 64, 2, 32), 2)
    state = la.SkipState()
    la.attention(q, q, q, state, cpu_tile=(16, 16))
    # The binding checks the state buffers against the state's key once, when it takes them.
    from lite_attention import _ext
    from lite_attention._core import state_buffers

    def take(mask=state.mask, kept=state.kept, cumulative=state.cumulative):
        return state_buffers(state.key, lambda a: a, mask, state.row_visits, None, kept, cumulative)

    with pytest.raises(ValueError, match=r"state.mask: expected \d+ elements for this state key"):
        take(mask=state.mask[:3])
    with pytest.raises(TypeError, match=r"state.kept: expected dtype uint32, got float32"):
        take(kept=state.kept.astype(np.float32))
    with pytest.raises(TypeError, match=r"state.mask: expected a state buffer of \d+ elements, got None"):
        take(mask=None)
    # The optional running totals: B * H int64.
    with pytest.raises(ValueError, match=r"state.cumulative: expected 2 elements for this state key, got 1"):
        take(cumulative=state.cumulative[:1])
    with pytest.raises(TypeError, match=r"state.cumulative: expected dtype int64, got int32"):
        take(cumulative=state.cumulative.astype(np.int32))
    # A call checks that the state's key is its own, and that a skipping call has a state.
    args = (None, True, -10.0, "running", "descending", [], [], [], (16, 16), 0, "auto", 0, False)
    _ext.forward(q, q, q, np.empty_like(q), None, take(), *args)  # the state's own call runs
    other = la.SkipState()
    la.attention(q[:, :32], q[:, :32], q[:, :32], other, cpu_tile=(16, 16))
    with pytest.raises(ValueError, match=r"state: expected a state for B=1 H=2 Lq=64 .* got one for B=1 H=2 Lq=32"):
        _ext.forward(q, q, q, np.empty_like(q), None, other.handle(), *args)
    with pytest.raises(TypeError, match=r"state: expected the skip state of a skipping call, got None"):
        _ext.forward(q, q, q, np.empty_like(q), None, None, *args)
    with pytest.raises(ValueError, match=r"criterion: expected 'running' or 'previous'"):
        _ext.forward(q, q, q, np.empty_like(q), None, None, None, False, -10.0, "x", "descending", [], [], [], None,
                     0, "auto", 0, False)
    with pytest.raises(ValueError, match=r"must_do: at most 16 ranges"):
        la.attention(q, q, q, must_do=[(2 * i, 2 * i + 1) for i in range(20)])


def test_cuda_request_without_cuda_is_clear():
    if la.cuda_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device"):
        la.state_layout(1, 128, 2, 64, device="tpu")
