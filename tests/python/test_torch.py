"""The torch layer: tensors in, tensors out; torch.library ops (opcheck); torch.compile with
fullgraph=True and no recompilation per step; CUDA tensors and CUDA graphs (marked gpu)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lite_attention as la  # noqa: E402
from conftest import randn, record_ops, reference  # noqa: E402
from conftest import torch_drifting as drifting  # noqa: E402


def tq(shape, seed=0, dtype=torch.float32, device="cpu"):
    return torch.from_numpy(randn(shape, seed)).to(device=device, dtype=dtype)


@pytest.mark.parametrize("no_torch_ops", [False, True])
def test_lite_attention_imported_before_torch(no_torch_ops):
    """lite_attention first, torch after it, in a fresh interpreter: torch's own import must not
    trip over what the extension loaded (an extension that exported a statically linked
    libstdc++'s unique symbols crashed it), and both must work after."""
    import os
    import subprocess
    import sys

    code = ("import lite_attention as la\n"
            "import torch\n"
            "q = torch.randn(1, 64, 2, 16)\n"
            "out = la.LiteAttention(threshold=-1.0, cpu_tile=(16, 16))(q, q, q)\n"
            "ref = torch.nn.functional.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, q, q)))\n"
            "assert torch.allclose(out, ref.transpose(1, 2), atol=1e-4), (out - ref.transpose(1, 2)).abs().max()\n"
            "print('ok')\n")
    env = dict(os.environ, LITE_ATTENTION_NO_TORCH="1") if no_torch_ops else dict(os.environ)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-2000:])


def test_torch_matches_numpy_and_returns_tensors():
    a_np = la.LiteAttention(threshold=-1.0, cpu_tile=(16, 16))
    a_t = la.LiteAttention(threshold=-1.0, cpu_tile=(16, 16))
    for step in range(3):
        q, k, v = drifting(step)
        out, lse = a_t(q, k, v, return_softmax_lse=True)
        ref, ref_lse = a_np(q.numpy(), k.numpy(), v.numpy(), return_softmax_lse=True)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == q.shape
        assert isinstance(lse, torch.Tensor) and lse.shape == (1, 2, 128)
        np.testing.assert_array_equal(out.numpy(), ref)
        np.testing.assert_array_equal(lse.numpy(), ref_lse)
    assert a_t.stats.sparsity == a_np.stats.sparsity > 0
    assert a_t.state().mask.dtype == torch.int32  # torch state buffers are torch tensors


def test_torch_bfloat16_and_noncontiguous():
    q = tq((1, 96, 4, 64), 3).transpose(1, 2).contiguous().transpose(1, 2)  # (B, L, H, D) view, strided
    assert not q.is_contiguous() and q.stride(-1) == 1
    out = la.LiteAttention(cpu_tile=(32, 32))(q.bfloat16(), q.bfloat16(), q.bfloat16())
    assert out.dtype == torch.bfloat16
    ref, _ = reference(q.bfloat16().float().numpy(), q.bfloat16().float().numpy(), q.bfloat16().float().numpy())
    np.testing.assert_allclose(out.float().numpy(), ref, atol=2e-2)


def test_torch_errors():
    q = tq((1, 32, 2, 16))
    attn = la.LiteAttention()
    with pytest.raises(TypeError, match="query: expected dtype bfloat16, float16 or float32, got torch.float64"):
        attn(q.double(), q, q)
    with pytest.raises(TypeError, match="key: expected a torch array like query"):
        attn(q, q.numpy(), q)
    with pytest.raises(ValueError, match="query: expected a unit stride in the last"):
        attn(q.transpose(2, 3), q.transpose(2, 3), q.transpose(2, 3))
    with pytest.raises(ValueError, match="criterion: expected one of 'running', 'previous'"):
        la.attention(q, q, q, la.SkipState(), criterion=["running"])
    if not torch.cuda.is_available():
        return
    with pytest.raises(ValueError, match="key: expected device cpu"):
        attn(q, q.cuda(), q)


def test_checks_still_reject_after_a_layout_passed():
    # Calls skip the argument checks for a layout that passed before (_core.check_call): every
    # attribute the checks read must be part of that layout, or one of these would get through.
    q = tq((1, 32, 2, 16))
    attn, undisturbed = la.LiteAttention(cpu_tile=(16, 16)), la.LiteAttention(cpu_tile=(16, 16))
    attn(q, q, q)
    undisturbed(q, q, q)
    with pytest.raises(TypeError, match=r"value: expected dtype float32 \(as query\), got torch.float16"):
        attn(q, q, q.half())
    strided = torch.empty(1, 32, 2, 32)[..., ::2]
    strided.copy_(q)
    with pytest.raises(ValueError, match="key: expected a unit stride in the last"):
        attn(q, strided, q)
    with pytest.raises(ValueError, match="value: expected the shape of key"):
        attn(q, q, q[:, :16])
    with pytest.raises(TypeError, match="key: expected a torch array like query"):
        attn(q, q.numpy(), q)
    with pytest.raises(ValueError, match="query: expected a CPU or CUDA tensor, got device meta"):
        attn(q.to("meta"), q.to("meta"), q.to("meta"))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="value: expected device cpu"):
            attn(q, q, q.cuda())
    # A view with torch's lazy negation bit: its memory holds -values. Same shape and strides as
    # the layout that passed, so only the bit tells it apart.
    negated = torch._neg_view(q)
    assert negated.is_neg()
    with pytest.raises(ValueError, match="value: expected a tensor without a pending negation"):
        attn(q, q, negated)
    # The rejected calls left the state and the step alone: the next call is the undisturbed one's.
    assert attn.step == undisturbed.step == 0
    torch.testing.assert_close(attn(q, q, q), undisturbed(q, q, q), rtol=0, atol=0)


def test_opcheck():
    from torch.library import opcheck

    q, k, v = drifting(0, L=40, D=16)
    key = la.StateKey(1, 40, 2, 16, 40, "float32", ("cpu", 0), (16, 16), False)
    s = la.SkipState.allocate(la._arrays.torch_lib(), key, q)
    s.reset()
    op = torch.ops.lite_attention.forward.default
    args = (q, k, v, s.mask, s.row_visits, None, s.kept, s.cumulative, torch.tensor(-2.0), torch.tensor(True), None,
            "running", "descending", [], [], [], [16, 16], 0, False, True)
    opcheck(op, args)
    dense = (q, k, v, None, None, None, None, None, torch.tensor(-2.0), torch.tensor(False), 0.5, "running",
             "alternate", [0, 8], [], [0, 4], None, 1, False, False)
    opcheck(op, dense)
    opcheck(torch.ops.lite_attention.reset_state.default,
            (s.mask, s.row_visits, None, s.kept, [1, 40, 2, 16, 0], 40, "running", [16, 16]))


def test_eager_calls_match_calls_through_the_op():
    # Eager calls on plain tensors run the op's implementation directly (no dispatcher); with a
    # dispatch mode active (as under tracing) the call goes through torch.ops. Both must give the
    # same outputs and leave the same skip state.
    direct = la.LiteAttention(threshold=-1.0, cpu_tile=(16, 16))
    via_op = la.LiteAttention(threshold=-1.0, cpu_tile=(16, 16))
    for step in range(3):
        q, k, v = drifting(step)
        out, lse = direct(q, k, v, return_softmax_lse=True)
        plain = direct(q, k, v, branch="no_lse")
        with record_ops() as mode:
            out_op, lse_op = via_op(q, k, v, return_softmax_lse=True)
            plain_op = via_op(q, k, v, branch="no_lse")
        assert mode.ops.count("lite_attention::forward") == 2, mode.ops
        np.testing.assert_array_equal(out.numpy(), out_op.numpy())
        np.testing.assert_array_equal(lse.numpy(), lse_op.numpy())
        np.testing.assert_array_equal(plain.numpy(), plain_op.numpy())
    for branch in ("default", "no_lse"):
        assert direct.stats_for(branch).to_dict() == via_op.stats_for(branch).to_dict()
        np.testing.assert_array_equal(direct.state(branch).read_mask(), via_op.state(branch).read_mask())
    assert direct.stats.cumulative_sparsity > 0 and direct.step == via_op.step == 2


class Block(torch.nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.proj = torch.nn.Linear(32, 32)
        self.attn = la.LiteAttention(cpu_tile=(16, 16), **kw)

    def forward(self, q, k, v, branch=None):
        return self.proj(self.attn(q, k, v, branch=branch))


def test_compile_fullgraph_no_graph_break_no_recompile_per_step():
    import torch._dynamo

    torch._dynamo.reset()
    compiles = []

    def backend(gm, example_inputs):
        compiles.append(gm)
        return gm

    sched = la.ThresholdSchedule([-20.0, -3.0, -2.0, -1.0, -0.5], warmup_steps=1)
    torch.manual_seed(0)
    model = Block(schedule=sched)
    eager = Block(schedule=sched)
    eager.load_state_dict(model.state_dict())
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    with torch.no_grad():
        for step in range(8):
            q, k, v = drifting(step)
            for branch in ("cond", "uncond"):
                np.testing.assert_array_equal(compiled(q, k, v, branch).numpy(), eager(q, k, v, branch).numpy())
    assert model.attn.step == eager.attn.step == 7
    assert model.attn.stats_for("uncond").sparsity == eager.attn.stats_for("uncond").sparsity > 0
    # One graph per branch-bookkeeping state, none per step or threshold.
    assert len(compiles) <= 4, len(compiles)


def test_compile_inductor_matches_eager():
    import torch._dynamo

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Block(threshold=-1.0)
    eager = Block(threshold=-1.0)
    eager.load_state_dict(model.state_dict())
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        for step in range(3):
            q, k, v = drifting(step)
            torch.testing.assert_close(compiled(q, k, v), eager(q, k, v))
    assert model.attn.stats.sparsity == eager.attn.stats.sparsity


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_matches_cpu_reference(dtype):
    gpu = la.LiteAttention(threshold=-2.0)
    cpu = la.LiteAttention(threshold=-2.0)  # the CPU reference defaults to the kernel's tiles
    sparsities = []
    for step in range(4):
        q, k, v = drifting(step, L=1000, H=4, D=128, dtype=dtype, device="cuda")
        out = gpu(q, k, v)
        ref = cpu(q.cpu(), k.cpu(), v.cpu())
        assert out.device.type == "cuda" and out.dtype == dtype
        torch.testing.assert_close(out.cpu().float(), ref.float(), atol=2e-2, rtol=2e-2)
        sparsities.append(gpu.stats.sparsity)
    assert abs(gpu.stats.sparsity - cpu.stats.sparsity) < 0.02
    # The kernel adds each call's kept counts to the running totals.
    assert gpu.stats.cumulative_sparsity == pytest.approx(np.mean(sparsities)) and max(sparsities) > 0


@pytest.mark.gpu
def test_cuda_graph_capture_replays_state_swaps():
    q, k, v = drifting(0, L=1024, H=2, D=128, dtype=torch.bfloat16, device="cuda")
    attn = la.LiteAttention(threshold=-2.0)
    ref = la.LiteAttention(threshold=-2.0)
    attn(q, k, v)  # shape the state outside the graph
    ref(q, k, v)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        attn(q, k, v)  # warm-up on the side stream
    torch.cuda.current_stream().wait_stream(s)
    ref(q, k, v)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = attn(q, k, v)
    for _ in range(3):
        g.replay()
        expected = ref(q, k, v)
        torch.cuda.synchronize()
        torch.testing.assert_close(out, expected)
        np.testing.assert_array_equal(attn.state().read_mask(), ref.state().read_mask())
    assert attn.stats.calls == ref.stats.calls


def test_model_helpers_and_reset_through_the_op():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Block(threshold=0.0) for _ in range(3)])

        def forward(self, q, k, v, branch=None):
            for b in self.blocks:
                q = b(q, k, v, branch)
            return q

    m = Model()
    attns = la.find_lite_attention(m)
    assert len(attns) == 3
    with torch.no_grad():
        for step in range(3):
            la.set_step(m, step)
            q, k, v = drifting(step)
            m(q, k, v, "cond")
            m(q, k, v, "uncond")
    assert all(a.step == 2 and set(a.branches) == {"cond", "uncond"} for a in attns)
    assert attns[0].stats.next_sparsity > 0
    la.reset_skip_states(m)
    assert all(a.step == 0 and a.stats.calls == 0 and a.stats.next_sparsity == 0 for a in attns)
    q, k, v = drifting(0)
    out = attns[0](q, k, v, branch="cond")
    np.testing.assert_allclose(out.numpy(), la.attention(q.numpy(), k.numpy(), v.numpy(), cpu_tile=(16, 16)))


def test_torch_rejected_call_leaves_state_and_core_errors_pass_through_the_op():
    attn = la.LiteAttention(threshold=0.0, cpu_tile=(16, 16))
    q, k, v = drifting(0, L=64)
    attn(q, k, v)
    attn(q, k, v)
    st = attn.state()
    before = [b.clone() for b in (st.mask, st.row_visits, st.kept, st.cumulative)]
    with pytest.raises(ValueError, match=r"must_do_list: at most 16 ranges"):
        attn(q, k, v, must_do_list=[(2 * i, 2 * i + 1) for i in range(20)])
    with pytest.raises(ValueError, match=r"must_do: range 0 \[5, 3\) must satisfy"):  # from the C++ core, through the op
        torch.ops.lite_attention.forward(q, k, v, st.mask, st.row_visits, None, st.kept, st.cumulative,
                                         torch.tensor(-2.0), torch.tensor(True), None, "running", "descending",
                                         [5, 3], [], [], [16, 16], 0, False, False)
    with pytest.raises(ValueError, match=r"must_skip_list"):
        attn(*drifting(0, L=80), must_skip_list=[70, 90])  # a new key, rejected before the reset
    assert attn.state() is st and attn.step == 1
    for b, a in zip(before, (st.mask, st.row_visits, st.kept, st.cumulative)):
        assert torch.equal(a, b)


def test_calibrate_on_torch_trajectory_matches_numpy():
    w = la.VideoWorkload(frames=2, height=8, width=8, heads=2, head_dim=32, steps=4)
    like = torch.empty(0)
    a = la.calibrate(w.trajectory(like=like), steps=4, budget=0.05, cpu_tile=(16, 16), candidates=[-1, -3, -8])
    b = la.calibrate(w, budget=0.05, cpu_tile=(16, 16), candidates=[-1, -3, -8])
    assert a.schedule == b.schedule
    np.testing.assert_allclose(a.errors, b.errors, rtol=1e-6, atol=1e-9)


@pytest.mark.gpu
def test_cuda_opcheck_and_compile():
    from torch.library import opcheck

    q, k, v = drifting(0, L=300, H=2, D=128, dtype=torch.bfloat16, device="cuda")
    attn = la.LiteAttention(threshold=-2.0)
    attn(q, k, v)
    s = attn.state()
    opcheck(torch.ops.lite_attention.forward.default,
            (q, k, v, s.mask, s.row_visits, None, s.kept, s.cumulative, torch.tensor(-2.0), torch.tensor(True), None,
             "running", "descending", [], [], [], None, 0, False, True))
    model = la.LiteAttention(threshold=-2.0)
    eager = la.LiteAttention(threshold=-2.0)
    f = torch.compile(lambda a, b, c: model(a, b, c) * 1.0, fullgraph=True)
    for step in range(3):
        q, k, v = drifting(step, L=300, H=2, D=128, dtype=torch.bfloat16, device="cuda")
        torch.testing.assert_close(f(q, k, v), eager(q, k, v))


def test_inference_mode_then_no_grad():
    with torch.inference_mode():
        attn = la.LiteAttention(threshold=0.0, cpu_tile=(16, 16))
        q, k, v = drifting(0, L=64)
        attn(q, k, v)
        attn(q, k, v)
    with torch.no_grad():
        attn(q, k, v)  # the state (made in inference mode) is updated outside it
    attn(q, k, v)
    assert attn.stats.calls == 4 and attn.step == 3


def test_backward_says_inference_only():
    q = tq((1, 16, 1, 16)).requires_grad_()
    attn = la.LiteAttention()
    out = attn(q, q, q)
    assert out.requires_grad
    np.testing.assert_array_equal(out.detach().numpy(), la.attention(q.detach().numpy(), q.detach().numpy(),
                                                                      q.detach().numpy()))
    with pytest.raises(NotImplementedError, match="inference-only"):
        out.sum().backward()
    with torch.no_grad():
        assert not attn(q, q, q).requires_grad


_EXIT_SCRIPT = """
import torch, lite_attention as la
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = la.LiteAttention(cpu_tile=(16, 16))
    def forward(self, q):
        return self.attn(q, q, q)
q = torch.randn(1, 64, 2, 16)
eager, compiled = M(), torch.compile(M(), fullgraph=True, backend="eager")
eager(q)     # a state with a binding handle, alive until the interpreter's teardown
compiled(q)
print("ran")
"""


def test_no_leak_report_at_exit_after_compile():
    # States still alive at the interpreter's teardown (module globals, torch.compile's caches)
    # drop their binding handles at exit; nanobind used to report them as leaked StateBuffers.
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "ran" in r.stdout, r.stderr[-2000:]
    assert "leaked" not in r.stderr, r.stderr[-2000:]
