"""The diffusers integration on a tiny WanTransformer3DModel built from a config with random
weights: this tests the integration (shapes, routing, branches, steps), not quality."""
import contextlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import lite_attention as la  # noqa: E402
from lite_attention.integrations import diffusers as la_diffusers  # noqa: E402
from lite_attention.integrations.diffusers import _routing  # noqa: E402
from lite_attention.integrations.diffusers._trajectory import _Trajectory  # noqa: E402


def tiny_wan(head_dim=32, heads=2):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim,
                                  in_channels=4, out_channels=4, text_dim=32, freq_dim=32, ffn_dim=2 * head_dim,
                                  num_layers=2, rope_max_seq_len=64)
    return model.eval()


def inputs(seed=0, frames=3, size=16):
    """Latents of frames x size/2 x size/2 tokens after the 2 x 2 patches, and a text embedding."""
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 4, frames, size, size, generator=g)
    text = torch.randn(1, 8, 32, generator=g)
    return latents, text


def cfg_steps(model, latents, text, timesteps=(900, 700, 500, 300), explicit=True):
    """A few sampler steps with classifier-free guidance, a conditional and an unconditional pass
    each. explicit: the passes named with branch() and the steps set, as the docs show; else the
    transformer is called as a diffusers pipeline calls it, with no LiteAttention code."""
    with torch.no_grad():
        for step, t in enumerate(timesteps):
            if explicit:
                la.set_step(model, step)
            t = torch.tensor([t], device=latents.device)
            with la_diffusers.branch("cond") if explicit else contextlib.nullcontext():
                cond = model(latents, t, text).sample
            with la_diffusers.branch("uncond") if explicit else contextlib.nullcontext():
                uncond = model(latents, t, torch.zeros_like(text)).sample
            latents = latents - 0.1 * (uncond + 2.0 * (cond - uncond))
    return latents


def test_dense_lite_attention_matches_diffusers():
    model = tiny_wan()
    latents, text = inputs()
    t = torch.tensor([500])
    with torch.no_grad():
        reference = model(latents, t, text).sample
        attns = la_diffusers.install(model, enable_skipping=False, auto_branches=False)
        assert len(attns) == 2  # the two self-attention layers (attn1), not the cross-attention
        out = model(latents, t, text).sample
        model(latents, t, text)
    assert all(a.step == 1 for a in attns)  # both calls went through the LiteAttention instances
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=1e-4)
    la_diffusers.uninstall(model)
    assert not any(isinstance(getattr(m, "processor", None), la_diffusers.LiteAttentionProcessor)
                   for m in model.modules())


def test_skipping_with_branches_and_steps():
    model = tiny_wan()
    attns = la_diffusers.install(model, threshold=-1.0, cpu_tile=(16, 16))
    assert la.find_lite_attention(model) == attns
    latents = cfg_steps(model, *inputs())
    for a in attns:
        assert a.step == 3 and set(a.branches) == {"cond", "uncond"}
        assert a.stats_for("cond").calls == 4 and a.stats_for("uncond").calls == 4
    assert max(a.stats_for("cond").sparsity for a in attns) > 0
    assert torch.isfinite(latents).all()
    la.reset_skip_states(model)
    assert all(a.stats_for("cond").calls == 0 for a in attns)


@pytest.mark.parametrize("explicit", [False, True], ids=["as-is", "explicit-loop"])
def test_each_video_starts_afresh_and_keeps_branches_apart(explicit):
    """As a pipeline calls it (no branch() or set_step), the passes of a step run on branches 0
    and 1 (by the timestep the pipeline passes); in the documented loop they run on the branches
    it names. Either way a new video starts from fresh states: each video equals a fresh model's
    run with explicit branches and steps, bit for bit."""
    options = dict(threshold=-1.0, cpu_tile=(16, 16))
    fresh = tiny_wan()
    la_diffusers.install(fresh, **options)
    want = cfg_steps(fresh, *inputs())
    model = tiny_wan()
    attns = la_diffusers.install(model, **options)
    branches = ("cond", "uncond") if explicit else (0, 1)
    for video in range(2):
        assert torch.equal(cfg_steps(model, *inputs(), explicit=explicit), want), f"video {video}"
        for a in attns:
            assert set(a.branches) == set(branches) and a.step == 3
            assert all(a.stats_for(b).calls == 4 for b in branches)
    assert max(a.stats_for(branches[0]).sparsity for a in attns) > 0  # the branches' masks mattered
    la_diffusers.uninstall(model)
    assert not model._forward_pre_hooks and not model._forward_hooks


def test_every_layer_follows_the_sampler_steps_when_a_block_sits_out():
    """A block cache leaves a block out of some passes: its LiteAttention still takes each pass's
    step (and so its threshold) from the sampler, not from its own count of calls."""
    schedule = la.ThresholdSchedule([-30.0, -20.0, -10.0, -5.0], warmup_steps=1)
    model = tiny_wan()
    attns = la_diffusers.install(model, schedule=schedule, cpu_tile=(16, 16))
    block = model.blocks[1]
    original, sit_out = block.forward, [False]
    block.forward = lambda hidden_states, *args, **kwargs: (
        hidden_states if sit_out[0] else original(hidden_states, *args, **kwargs))
    latents, text = inputs()
    with torch.no_grad():
        for step, t in enumerate((900, 700, 500, 300)):
            sit_out[0] = step in (1, 2)  # the second layer's attention runs at steps 0 and 3 only
            for _ in range(2):  # the CFG passes
                model(latents, torch.tensor([t]), text)
            assert [a.step for a in attns] == [step, step]
    assert attns[1].threshold == -5.0 and attns[1].stats_for(0).calls == 1  # one skipping call (step 0 is warm-up)


def test_install_misuse_is_named():
    model = tiny_wan()
    attns = la_diffusers.install(model, threshold=-3.0)
    assert la_diffusers.install(model) == attns  # again, no arguments: the installed ones
    with pytest.raises(ValueError, match=r"^enable_skipping, threshold: these modules already have a LiteAttention"):
        la_diffusers.install(model, threshold=-1.0, enable_skipping=False)  # never silently dropped
    assert all(a.threshold == -3.0 for a in attns)
    la_diffusers.uninstall(model)
    with pytest.raises(TypeError, match=r"^lite_attention: install\(\) gives every module its own LiteAttention"):
        la_diffusers.install(model, lite_attention=la.LiteAttention())

    class Pipeline:
        transformer = model

    with pytest.raises(TypeError, match=r"^model: expected the pipeline's transformer"):
        la_diffusers.install(Pipeline())
    with pytest.raises(TypeError, match=r"^model: got a torch.compile'd module"):
        la_diffusers.install(torch.compile(model))
    assert not any(isinstance(getattr(m, "processor", None), la_diffusers.LiteAttentionProcessor)
                   for m in model.modules())


class BranchRecorder(torch.nn.Module):
    """A stand-in transformer: records the branch each pass runs on; holds one LiteAttention."""

    def __init__(self):
        super().__init__()
        self.attn = la.LiteAttention()
        self.branches = []

    def forward(self, x, timestep, fail=False):
        self.branches.append(_routing.CURRENT.branch)
        if fail:
            raise ValueError("a pass that fails")
        return x


def test_regional_compile_with_fullgraph_traces_the_routing():
    """diffusers' regional compile (compile_repeated_blocks(fullgraph=True)) of an installed model:
    the routing and the LiteAttention call trace without a graph break, a pipeline-style run
    equals the eager one, and the graphs do not multiply with the layers or the steps."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    options = dict(threshold=-1.0, cpu_tile=(16, 16))
    eager = tiny_wan()
    la_diffusers.install(eager, **options)
    want = cfg_steps(eager, *inputs(), explicit=False)
    torch._dynamo.reset()
    counters.clear()
    model = tiny_wan()
    attns = la_diffusers.install(model, **options)
    model.compile_repeated_blocks(fullgraph=True, backend="aot_eager")
    got = cfg_steps(model, *inputs(), explicit=False)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert all(a.stats_for(0).calls == 4 and a.stats_for(1).calls == 4 for a in attns)
    assert max(a.stats_for(0).sparsity for a in attns) > 0
    # One graph per branch and state bookkeeping (states created, steps begun), for both blocks.
    assert 0 < counters["stats"]["unique_graphs"] <= 6, dict(counters["stats"])
    torch._dynamo.reset()


def test_whole_model_compile_keeps_each_layer_on_its_own_lite_attention():
    """torch.compile of the whole transformer traces both layers' routed calls in one frame: each
    must reach its own layer's LiteAttention (a router found by a shared name would send both to
    the first layer's)."""
    import torch._dynamo

    options = dict(threshold=-1.0, cpu_tile=(16, 16))
    eager = tiny_wan()
    eager_attns = la_diffusers.install(eager, **options)
    want = cfg_steps(eager, *inputs(), explicit=False)
    torch._dynamo.reset()
    model = tiny_wan()
    attns = la_diffusers.install(model, **options)
    got = cfg_steps(torch.compile(model, backend="aot_eager"), *inputs(), explicit=False)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for a, e in zip(attns, eager_attns):
        assert a.step == 3 and a.stats_for(0).calls == 4 and a.stats_for(1).calls == 4
        assert (a.state(1).tile_mask() == e.state(1).tile_mask()).all()
    torch._dynamo.reset()


def test_recorded_inputs_are_the_layers_and_calibrate_a_schedule():
    """record() keeps one layer's (q, k, v) per step on one branch: attention over them gives what
    the layer's output projection received (captured by a hook on diffusers' module), and the list
    calibrates a schedule."""
    model = tiny_wan()
    la_diffusers.install(model, enable_skipping=False)
    projected = []  # the attention output of layer 1 on every pass, as its output projection sees it
    hook = model.blocks[1].attn1.to_out[0].register_forward_pre_hook(lambda m, args: projected.append(args[0]))
    with la_diffusers.record(model, layer=1, branch=1) as trajectory, \
            la_diffusers.record(model, layer=0, branch=0, heads=slice(0, 1)) as first_head:
        cfg_steps(model, *inputs(), explicit=False)
    hook.remove()
    assert len(trajectory) == 4 and len(first_head) == 4 and len(projected) == 8
    for step, (q, k, v) in enumerate(trajectory):
        assert q.shape == k.shape == v.shape == (1, 192, 2, 32)
        out = torch.nn.functional.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v))).transpose(1, 2)
        # The unconditional pass is the second of each step.
        torch.testing.assert_close(out.flatten(2), projected[2 * step + 1], atol=1e-5, rtol=1e-5)
    assert all(q.shape == (1, 192, 1, 32) for q, _, _ in first_head)
    assert not torch.equal(first_head[0][0], trajectory[0][0][:, :, :1])  # another layer and branch
    result = la.calibrate(trajectory, budget=0.05, cpu_tile=(16, 16))
    assert len(result.schedule.thresholds) == 4 and result.within_budget
    with pytest.raises(ValueError, match=r"layer: expected an index in \[0, 1\], got 2"):
        with la_diffusers.record(model, layer=2):
            pass
    with pytest.raises(ValueError, match="model: no LiteAttention installed"):
        with la_diffusers.record(tiny_wan()):
            pass


@pytest.mark.parametrize("auto_branches", [True, False])
def test_another_thread_is_refused_while_a_pass_runs(auto_branches):
    """The branch and the running processor are process-wide (torch.compile reads them), so while
    one thread's pass runs, another thread's model call or branch() gets an error, not the first
    one's branch and states."""
    import threading

    model, other = tiny_wan(), tiny_wan()
    la_diffusers.install(model, auto_branches=auto_branches)
    la_diffusers.install(other, auto_branches=auto_branches)
    latents, text = inputs()
    t = torch.tensor([500])
    processor = model.blocks[0].attn1.processor
    inside, release, errors = threading.Event(), threading.Event(), []

    def hold(*_):  # (the recording hook runs inside the processor's call)
        inside.set()
        release.wait(60)

    def run():
        try:
            with torch.no_grad():
                model(latents, t, text)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    processor._recorders.append(hold)
    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert inside.wait(60)
        refused = "runs one pipeline at a time per process; another thread is inside"
        with pytest.raises(RuntimeError, match=refused):
            with torch.no_grad():
                other(latents, t, text)
        with pytest.raises(RuntimeError, match=refused):
            with la_diffusers.branch("cond"):
                pass
    finally:
        release.set()
        worker.join(60)
        processor._recorders.remove(hold)
    assert not errors
    with torch.no_grad(), la_diffusers.branch("cond"):
        other(latents, t, text)  # one at a time is fine


@pytest.mark.parametrize("how", ["deepcopy", "torch.save"])
def test_a_copied_model_has_its_own_processors_states_and_hooks(how):
    """copy.deepcopy or torch.save/torch.load of an installed model: the copy's processors wrap
    its own LiteAttention instances, which start from the original's masks and then go their own
    way; uninstalling the copy leaves the original's hooks and routing in place."""
    import copy
    import io

    model = tiny_wan()
    attns = la_diffusers.install(model, threshold=-1.0, cpu_tile=(16, 16))
    cfg_steps(model, *inputs(), explicit=False)
    if how == "deepcopy":
        clone = copy.deepcopy(model)
    else:
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        clone = torch.load(buffer, weights_only=False)
    clone_attns = la.find_lite_attention(clone)
    assert len(clone_attns) == 2 and not set(map(id, clone_attns)) & set(map(id, attns))
    for a, c in zip(attns, clone_attns):
        assert (c.state(1).tile_mask() == a.state(1).tile_mask()).all() and c.step == a.step
    cfg_steps(clone, *inputs(seed=5), explicit=False, timesteps=(950, 800))  # a new video on the clone
    assert all(c.stats_for(0).calls == 2 for c in clone_attns)
    assert all(a.stats_for(0).calls == 4 for a in attns)  # the original's states untouched
    la_diffusers.uninstall(clone)
    assert len(model._forward_pre_hooks) == 1 and len(model._forward_hooks) == 1
    cfg_steps(model, *inputs(seed=5), explicit=False, timesteps=(950, 800))
    assert all(a.stats_for(0).calls == 2 for a in attns)  # still routed, a new video started
    la_diffusers.uninstall(model)


def test_trajectory_follows_per_token_timesteps_floats_and_failures():
    model = BranchRecorder()
    trajectory = _Trajectory(model)
    x = torch.zeros(1)
    # Per-token timesteps (Wan2.2 image-to-video: 0 for the conditioning frame's tokens) count by
    # their largest value. Two passes per step, then a new video, whose first pass resets.
    def per_token(t):
        return torch.tensor([[0.0, 0.0, t, t]])

    for t in (900.0, 700.0):
        model(x, per_token(t))
        model(x, per_token(t))
    model.attn.step = 7
    model(x, per_token(900.0))
    assert model.branches == [0, 1, 0, 1, 0] and model.attn.step == 0
    model.attn.step = 7
    model(x, torch.tensor(950.0))  # a 0-d tensor above the last timestep: a new video again
    assert model.attn.step == 0
    model.branches.clear()
    model(x, 500.0)
    model(x, timestep=500.0)  # Python floats, positional or by name
    with pytest.raises(ValueError, match="a pass that fails"):
        model(x, 500.0, fail=True)
    assert _routing.CURRENT.branch is None  # a failed pass leaves no branch set
    assert model.branches == [0, 1, 2]
    trajectory.remove()


def test_trajectory_refuses_a_timestep_repeated_past_the_limit():
    model = BranchRecorder()
    _Trajectory(model)
    for _ in range(_Trajectory.MAX_PASSES):
        model(torch.zeros(1), 999.0)
    with pytest.raises(RuntimeError, match=r"auto_branches: 9 passes in a row at timestep 999.0"):
        model(torch.zeros(1), 999.0)
    assert _routing.CURRENT.branch is None


def test_auto_branches_needs_a_timestep_argument():
    model = tiny_wan()
    with pytest.raises(ValueError, match=r"auto_branches: WanTransformerBlock.forward takes no timestep"):
        la_diffusers.install(model.blocks[0])
    assert len(la_diffusers.install(model.blocks[0], auto_branches=False)) == 1


@pytest.mark.gpu
def test_a_pass_captured_in_a_cuda_graph_inside_a_branch_reads_no_timestep():
    """Inside branch() the hook only watches for a new video; while a CUDA graph captures the
    pass it leaves the timestep alone (reading it would synchronize, which a capture forbids)."""
    model = BranchRecorder()
    trajectory = _Trajectory(model)
    x, t = torch.zeros(4, device="cuda"), torch.tensor([500.0], device="cuda")
    graph = torch.cuda.CUDAGraph()
    with la_diffusers.branch("cond"), torch.cuda.graph(graph):
        model(x, t)
    assert model.branches == ["cond"] and trajectory.last is None
    with la_diffusers.branch("cond"):
        model(x, t)  # outside a capture the timestep is followed
    assert trajectory.last == 500.0


@pytest.mark.gpu
def test_on_the_gpu_kernel_dense_matches_diffusers_and_skipping_runs():
    """The same on CUDA in bfloat16 with head dim 64 (a kernel's head dim): dense LiteAttention
    against diffusers' own attention, then skipping steps with two branches."""
    model = tiny_wan(head_dim=64).to("cuda", torch.bfloat16)
    latents, text = (x.to("cuda", torch.bfloat16) for x in inputs(seed=1, frames=5, size=32))  # 1280 tokens
    t = torch.tensor([500], device="cuda")
    with torch.no_grad():
        reference = model(latents, t, text).sample.float()
        attns = la_diffusers.install(model, enable_skipping=False, auto_branches=False)
        dense = model(latents, t, text).sample.float()
        model(latents, t, text)
    assert all(a.step == 1 for a in attns)  # both calls went through the LiteAttention instances
    assert ((dense - reference).norm() / reference.norm()).item() < 2e-2
    la_diffusers.uninstall(model)

    attns = la_diffusers.install(model, threshold=-6.0)
    latents = cfg_steps(model, latents, text)
    # Every call ran the skipping path on its branch's state. (Random weights attend almost
    # uniformly: at the kernel's 128-row query tiles some row keeps every key tile, so nothing is
    # skipped here; the CPU test above skips with 16 x 16 tiles.)
    assert all(a.stats_for("cond").calls == 4 and a.stats_for("uncond").calls == 4 for a in attns)
    assert torch.isfinite(latents).all()


@pytest.mark.gpu
def test_on_the_gpu_regional_compile_matches_eager():
    """compile_repeated_blocks(fullgraph=True) on CUDA in bfloat16: the GPU kernel's call traced,
    the pipeline-style run within bf16 distance of the eager one. (aot_eager: inductor's code
    generation for these graphs takes minutes and is not what this checks.)"""
    import torch._dynamo

    options = dict(threshold=-6.0)
    latents, text = (x.to("cuda", torch.bfloat16) for x in inputs(seed=1, frames=5, size=32))
    eager = tiny_wan(head_dim=64).to("cuda", torch.bfloat16)
    la_diffusers.install(eager, **options)
    want = cfg_steps(eager, latents, text, explicit=False).float()
    torch._dynamo.reset()
    model = tiny_wan(head_dim=64).to("cuda", torch.bfloat16)
    attns = la_diffusers.install(model, **options)
    model.compile_repeated_blocks(fullgraph=True, backend="aot_eager")
    got = cfg_steps(model, latents, text, explicit=False).float()
    assert all(a.stats_for(0).calls == 4 and a.stats_for(1).calls == 4 for a in attns)
    assert ((got - want).norm() / want.norm()).item() < 1e-2
    torch._dynamo.reset()

