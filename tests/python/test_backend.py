"""The backend argument ('auto' = by the inputs' device, or 'cpu', 'sm90', 'sm80'): from
LiteAttention, attention() and calibrate() through the torch op and the binding to the C++ core.
The CPU half runs anywhere; the CUDA half runs the backends that available_backends() lists."""
import numpy as np
import pytest

import lite_attention as la
from lite_attention import LiteAttention, SeqParallelLiteAttention
from conftest import HAS_TORCH, randn, record_ops

ALLOWED = r"expected one of 'auto', 'cpu', 'sm90', 'sm80'"  # the Python layer's message
CORE_ALLOWED = r"expected 'auto', 'cpu', 'sm90' or 'sm80'"  # the binding's, for a value set after the checks
BACKENDS = la.available_backends()

Q = randn((1, 64, 2, 32), 1)


def drifting(step, L=96, H=2, D=32):
    base = randn((1, L, H, D), 0)
    x = (base + 0.05 * randn(base.shape, 100 + step)).astype(np.float32)
    return x, x, randn((1, L, H, D), 1)


# --- CPU ------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sm80", "sm90"])
def test_gpu_backend_with_cpu_arrays_is_rejected_naming_backend(backend):
    wrong = rf"backend: expected 'cpu' for CPU tensors, got '{backend}'"
    attn = LiteAttention(threshold=0.0, cpu_tile=(16, 16), backend=backend)
    assert attn.backend == backend
    for _ in range(2):
        with pytest.raises(ValueError, match=wrong):
            attn(Q, Q, Q)
    assert attn.state() is None and attn.step == 0  # the rejected calls changed nothing
    state = la.SkipState()
    with pytest.raises(ValueError, match=wrong):
        la.attention(Q, Q, Q, state, cpu_tile=(16, 16), backend=backend)
    assert not state.shaped  # the state a rejected call would have shaped is left alone
    with pytest.raises(ValueError, match=wrong):
        la.attention(Q, Q, Q, backend=backend)  # dense calls too
    with pytest.raises(ValueError, match=wrong):
        SeqParallelLiteAttention(num_nodes=2, backend=backend)(Q, Q[:, :32], Q[:, :32], 0)


def test_unknown_backend_is_rejected_naming_backend_and_the_allowed_values():
    for bad in ("bogus", "SM90", "cuda", None, ""):
        with pytest.raises(ValueError, match=rf"backend: {ALLOWED}, got {bad!r}"):
            LiteAttention(backend=bad)
        with pytest.raises(ValueError, match=rf"backend: {ALLOWED}, got {bad!r}"):
            la.attention(Q, Q, Q, backend=bad)
    with pytest.raises(ValueError, match=rf"backend: {ALLOWED}, got 'bogus'"):
        SeqParallelLiteAttention(num_nodes=2, backend="bogus")
    with pytest.raises(ValueError, match=rf"backend: {ALLOWED}, got 'bogus'"):
        la.calibrate([(Q, Q, Q)] * 2, budget=0.05, cpu_tile=(16, 16), backend="bogus")
    # The attribute is public (like criterion and order): a value set after construction is
    # checked by the binding, with the same kind of error.
    attn = LiteAttention(cpu_tile=(16, 16))
    attn(Q, Q, Q)
    attn.backend = "bogus"
    with pytest.raises(ValueError, match=rf"backend: {CORE_ALLOWED}, got 'bogus'"):
        attn(Q, Q, Q)
    assert attn.step == 0 and attn.stats.calls == 1
    from lite_attention import _ext

    with pytest.raises(ValueError, match=rf"backend: {CORE_ALLOWED}, got 'sm70'"):
        _ext.forward(Q, Q, Q, np.empty_like(Q), None, None, None, False, -10.0, "running", "descending", [], [], [],
                     None, 0, "sm70", 0, False)


def test_cpu_backend_matches_auto():
    auto = LiteAttention(threshold=-1.0, cpu_tile=(16, 16))
    cpu = LiteAttention(threshold=-1.0, cpu_tile=(16, 16), backend="cpu")
    s_auto, s_cpu = la.SkipState(), la.SkipState()
    for step in range(3):
        q, k, v = drifting(step)
        out, lse = auto(q, k, v, return_softmax_lse=True)
        out_cpu, lse_cpu = cpu(q, k, v, return_softmax_lse=True)
        np.testing.assert_array_equal(out, out_cpu)
        np.testing.assert_array_equal(lse, lse_cpu)
        f_auto = la.attention(q, k, v, s_auto, threshold=-1.0, cpu_tile=(16, 16))
        f_cpu = la.attention(q, k, v, s_cpu, threshold=-1.0, cpu_tile=(16, 16), backend="cpu")
        np.testing.assert_array_equal(f_auto, f_cpu)
    assert auto.stats.to_dict() == cpu.stats.to_dict() and cpu.stats.sparsity > 0
    np.testing.assert_array_equal(auto.state().read_mask(), cpu.state().read_mask())
    np.testing.assert_array_equal(s_auto.read_mask(), s_cpu.read_mask())
    assert "backend='cpu'" in repr(cpu)


def test_backend_reaches_calibrate():
    w = la.VideoWorkload(frames=2, height=8, width=8, heads=2, head_dim=32, steps=3)
    a = la.calibrate(w, budget=0.05, cpu_tile=(16, 16), candidates=[-1, -3, -8])
    b = la.calibrate(w, budget=0.05, cpu_tile=(16, 16), candidates=[-1, -3, -8], backend="cpu")
    assert a.schedule == b.schedule and a.errors == b.errors
    with pytest.raises(ValueError, match=r"backend: expected 'cpu' for CPU tensors, got 'sm80'"):
        la.calibrate(w, budget=0.05, cpu_tile=(16, 16), candidates=[-1, -3, -8], backend="sm80")


def test_available_backends_per_device():
    assert BACKENDS[0] == "cpu" and set(BACKENDS) <= {"cpu", "sm90", "sm80"}
    assert la.available_backends("cpu") == ["cpu"]
    with pytest.raises(ValueError, match=r"device: expected"):  # a NumPy integer is a GPU index too
        la.available_backends(np.int64(-1))
    expected = r"device: expected 'cpu', 'cuda', 'cuda:N', a GPU index or a torch\.device"
    for bad in ("gpu", "cpu:1", "cuda:x", "cuda:-1", ""):
        with pytest.raises(ValueError, match=rf"{expected}, got {bad!r}"):
            la.available_backends(bad)
    for bad in (True, 1.5, [0]):
        with pytest.raises(TypeError, match=expected):
            la.available_backends(bad)
    # A GPU index that is not a visible GPU (every index in a build without CUDA or without a GPU).
    gpus = len(_cuda_devices()) if la.cuda_available() else 0
    for index in (gpus, -1):
        with pytest.raises(ValueError, match=r"device: expected"):
            la.available_backends(index)
    with pytest.raises(ValueError, match=r"device: expected"):
        la.available_backends(f"cuda:{gpus}")


def _cuda_devices():
    """The visible GPUs' indices, through torch when it has CUDA, else through the library."""
    try:
        import torch

        if torch.cuda.is_available():
            return list(range(torch.cuda.device_count()))
    except ImportError:
        pass
    indices = []
    while True:  # the library's own view: probe until an index is rejected
        try:
            la.available_backends(len(indices))
        except ValueError:
            return indices
        indices.append(len(indices))


@pytest.mark.skipif(not la.cuda_available(), reason="needs a GPU")
def test_available_backends_of_each_gpu_make_up_the_machines():
    union = {"cpu"}
    for index in _cuda_devices():
        on_gpu = la.available_backends(index)
        assert on_gpu == la.available_backends(f"cuda:{index}")
        assert set(on_gpu) <= {"sm90", "sm80"}
        assert "sm90" not in on_gpu or "sm80" in on_gpu  # a Hopper GPU runs the portable kernel too
        union |= set(on_gpu)
    assert set(BACKENDS) == union and la.available_backends("cuda") == la.available_backends(0)
    if HAS_TORCH:
        import torch

        assert la.available_backends(torch.device("cuda", 0)) == la.available_backends(0)
        assert la.available_backends(torch.device("cpu")) == ["cpu"]


# --- torch on the CPU: the eager path and the op (what torch.compile and CUDA graphs call) ---------
torch_only = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")


@torch_only
def test_torch_backend_through_eager_calls_and_the_op():
    import torch

    q, k, v = (torch.from_numpy(x) for x in drifting(0))
    for backend in ("sm80", "sm90"):
        attn = LiteAttention(cpu_tile=(16, 16), backend=backend)
        with pytest.raises(ValueError, match=rf"backend: expected 'cpu' for CPU tensors, got '{backend}'"):
            attn(q, k, v)  # eager: the op's implementation, called directly
        with record_ops() as mode, pytest.raises(ValueError, match=rf"got '{backend}'"):
            attn(q, k, v)  # through torch.ops.lite_attention.forward
        assert mode.ops.count("lite_attention::forward") == 1
    auto = LiteAttention(threshold=-1.0, cpu_tile=(16, 16))
    cpu = LiteAttention(threshold=-1.0, cpu_tile=(16, 16), backend="cpu")
    for step in range(3):
        q, k, v = (torch.from_numpy(x) for x in drifting(step))
        expected = auto(q, k, v)
        with record_ops() as mode:
            got = cpu(q, k, v)
        assert mode.ops.count("lite_attention::forward") == 1
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    np.testing.assert_array_equal(auto.state().read_mask(), cpu.state().read_mask())
    # The op's schema takes the backend as its last argument (default 'auto').
    st = cpu.state()
    args = (q, k, v, st.mask, st.row_visits, None, st.kept, st.cumulative, torch.tensor(-2.0), torch.tensor(False),
            None, "running", "descending", [], [], [], [16, 16], 0, False, False)
    torch.ops.lite_attention.forward(*args)
    torch.ops.lite_attention.forward(*args, "cpu")
    with pytest.raises(ValueError, match=rf"backend: {CORE_ALLOWED}, got 'bogus'"):
        torch.ops.lite_attention.forward(*args, backend="bogus")
    with pytest.raises(ValueError, match=r"backend: expected 'cpu' for CPU tensors, got 'sm90'"):
        torch.ops.lite_attention.forward(*args, backend="sm90")


@torch_only
def test_torch_opcheck_and_compile_with_a_backend():
    import torch
    import torch._dynamo
    from torch.library import opcheck

    q, k, v = (torch.from_numpy(x) for x in drifting(0, L=40, D=16))
    key = la.StateKey(1, 40, 2, 16, 40, "float32", ("cpu", 0), (16, 16), False)
    s = la.SkipState.allocate(la._arrays.torch_lib(), key, q)
    s.reset()
    opcheck(torch.ops.lite_attention.forward.default,
            (q, k, v, s.mask, s.row_visits, None, s.kept, s.cumulative, torch.tensor(-2.0), torch.tensor(True), None,
             "running", "descending", [], [], [], [16, 16], 0, False, True, "cpu"))

    torch._dynamo.reset()
    compiles = []

    def backend(gm, example_inputs):
        compiles.append(gm)
        return gm

    model = LiteAttention(threshold=-1.0, cpu_tile=(16, 16), backend="cpu")
    eager = LiteAttention(threshold=-1.0, cpu_tile=(16, 16))
    f = torch.compile(lambda a, b, c: model(a, b, c) * 1.0, fullgraph=True, backend=backend)
    with torch.no_grad():
        for step in range(3):
            q, k, v = (torch.from_numpy(x) for x in drifting(step))
            torch.testing.assert_close(f(q, k, v), eager(q, k, v), rtol=0, atol=0)
    assert compiles and model.stats.sparsity == eager.stats.sparsity


# --- CUDA -----------------------------------------------------------------------------------
def needs(*names):
    missing = [n for n in names if n not in BACKENDS]
    return pytest.mark.skipif(bool(missing), reason=f"needs the {' and '.join(names)} backend(s); this machine runs "
                                                    f"{BACKENDS} (no GPU, or none of that compute capability)")


def cuda_drifting(step, L=1000, H=4, D=128, dtype=None):
    import torch

    x, _, v = drifting(step, L, H, D)
    dtype = dtype or torch.bfloat16
    t = torch.from_numpy(x).to("cuda", dtype)
    return t, t, torch.from_numpy(v).to("cuda", dtype)


def torch_reference(q, k, v, tile_mask=None, tile=None):
    """fp32 attention of (B, L, H, D) CUDA tensors, optionally restricted to the key tiles that a
    (B, H, q_tiles, k_tiles) boolean mask keeps. Returns (out, lse)."""
    import torch

    qf, kf, vf = (x.float().transpose(1, 2) for x in (q, k, v))  # (B, H, L, D)
    s = qf @ kf.transpose(-1, -2) / q.shape[-1] ** 0.5
    if tile_mask is not None:
        m = torch.from_numpy(np.ascontiguousarray(tile_mask)).to(q.device)
        m = m.repeat_interleave(tile[0], dim=2).repeat_interleave(tile[1], dim=3)[:, :, : q.shape[1], : k.shape[1]]
        s = s.masked_fill(~m, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    return (torch.softmax(s, dim=-1) @ vf).transpose(1, 2), lse


def _close(a, b, tol=2e-2):
    import torch

    torch.testing.assert_close(a.float(), b.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("backend", ["sm80", "sm90"])
@pytest.mark.parametrize("dtype_name,D", [("bfloat16", 128), ("bfloat16", 64), ("float16", 128)])
def test_cuda_backend_matches_fp32_reference(backend, dtype_name, D):
    if backend not in BACKENDS:
        pytest.skip(f"needs the {backend} backend; this machine runs {BACKENDS} (no GPU, or none of that "
                    f"compute capability)")
    import torch

    q, k, v = cuda_drifting(0, D=D, dtype=getattr(torch, dtype_name))
    ref, ref_lse = torch_reference(q, k, v)
    out, lse = LiteAttention(enable_skipping=False, backend=backend)(q, k, v, return_softmax_lse=True)
    assert out.dtype == q.dtype and out.device == q.device
    _close(out, ref)
    _close(lse, ref_lse, 1e-2)
    # 'auto' picks this backend where it is the device's own (sm90 on Hopper, else sm80).
    own = "sm90" if "sm90" in BACKENDS else "sm80"
    if backend == own:
        torch.testing.assert_close(LiteAttention(enable_skipping=False)(q, k, v), out, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"backend: the CPU reference needs CPU tensors"):
        LiteAttention(backend="cpu")(q, k, v)


@needs("sm80")
def test_cuda_sm90_on_a_gpu_without_it_names_backend():
    if "sm90" in BACKENDS:
        pytest.skip("this GPU runs sm90 (the check is for GPUs of another compute capability)")
    q, k, v = cuda_drifting(0, L=128)
    with pytest.raises(ValueError, match=r"backend: the Hopper kernel 'sm90' needs compute capability 9.0"):
        LiteAttention(backend="sm90")(q, k, v)


@needs("sm90", "sm80")
def test_cuda_sm80_and_sm90_agree():
    import torch

    for dtype in (torch.bfloat16, torch.float16):
        q, k, v = cuda_drifting(0, dtype=dtype)
        ref, _ = torch_reference(q, k, v)
        o90, l90 = la.attention(q, k, v, backend="sm90", return_lse=True)
        o80, l80 = la.attention(q, k, v, backend="sm80", return_lse=True)
        _close(o80, o90)
        _close(l80, l90, 1e-2)
        # Two kernels ran: their roundings differ somewhere (a backend argument lost on the way
        # would run the same kernel twice).
        assert not torch.equal(o80, o90)
        _close(o80, ref)
        _close(o90, ref)
    # Skipping trajectories: each backend on its own state, the same decisions but for near-ties.
    a90 = LiteAttention(threshold=-2.0, backend="sm90")
    a80 = LiteAttention(threshold=-2.0, backend="sm80")
    for step in range(4):
        q, k, v = cuda_drifting(step)
        _close(a80(q, k, v), a90(q, k, v))
    assert a90.stats.sparsity > 0 and abs(a90.stats.sparsity - a80.stats.sparsity) < 0.01


@needs("sm90", "sm80")
def test_cuda_sm80_continues_a_state_written_by_sm90():
    import torch

    attn = LiteAttention(threshold=-2.0, backend="sm90")
    for step in range(3):
        attn(*cuda_drifting(step))
    st = attn.state()
    calls = st.stats().calls
    read = st.tile_mask(newest=True)  # what the next call reads, written by sm90
    assert 0 < read.mean() < 1, read.mean()  # the next call skips some tiles, not all
    q, k, v = cuda_drifting(3)
    ref, ref_lse = torch_reference(q, k, v, read, st.key.tile)
    s90, s80 = st.clone(), st.clone()
    o90, l90 = la.attention(q, k, v, s90, threshold=-2.0, backend="sm90", return_lse=True)
    o80, l80 = la.attention(q, k, v, s80, threshold=-2.0, backend="sm80", return_lse=True)
    torch.cuda.synchronize()
    # Both continued the state (no reset) and computed exactly the tiles it told them to.
    assert s90.stats().calls == s80.stats().calls == calls + 1
    for o, l in ((o90, l90), (o80, l80)):
        _close(o, ref)
        _close(l, ref_lse, 1e-2)
    _close(o80, o90)
    # The masks they wrote agree but for rare near-ties of the threshold test.
    differing = (s90.tile_mask(newest=True) != s80.tile_mask(newest=True)).mean()
    assert differing < 0.01, differing
    # A change of the instance's backend continues its state (no reset, no stale options).
    attn.backend = "sm80"
    out = attn(q, k, v)
    assert attn.state() is st and attn.stats.calls == calls + 1
    _close(out, o90)
    np.testing.assert_array_equal(attn.state().tile_mask(newest=True), s80.tile_mask(newest=True))
