"""diffusers' own context parallelism (enable_parallelism with a ContextParallelConfig: Ulysses,
ring, or both) on a tiny WanTransformer3DModel with LiteAttention installed: ranks started with
torch.multiprocessing (gloo on the CPU, NCCL on two GPUs), each against the same model run whole
in its own process. The self-attention calls must reach the rank's LiteAttention, whose skip
states then hold the rank's heads (Ulysses) and query rows (ring) over the whole sequence."""
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
pytest.importorskip("diffusers")
if not dist.is_available():
    pytest.skip("this torch has no torch.distributed", allow_module_level=True)

import torch.multiprocessing as mp  # noqa: E402

from lite_attention.integrations import diffusers as la_diffusers  # noqa: E402

import test_diffusers  # noqa: E402  (the tiny model, with more heads)

HEADS = 4


def tiny_wan(head_dim):
    return test_diffusers.tiny_wan(head_dim, heads=HEADS)


def sample(model, frames, size, device, dtype, timesteps=(900, 700, 500)):
    """A few CFG steps as a pipeline runs them (no LiteAttention code: auto_branches names the
    passes). Timesteps are per token (Wan2.2's form, which diffusers' context parallelism shards
    with the tokens), the same value for every token."""
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 4, frames, size, size, generator=g).to(device, dtype)
    text = torch.randn(1, 8, 32, generator=g).to(device, dtype)
    tokens = frames * (size // 2) ** 2
    with torch.no_grad():
        for t in timesteps:
            t = torch.full((1, tokens), t, device=device)
            cond = model(latents, t, text, return_dict=False)[0]
            uncond = model(latents, t, torch.zeros_like(text), return_dict=False)[0]
            latents = latents - 0.1 * (uncond + 2.0 * (cond - uncond))
    return latents


def check_rank(rank, device, dtype, head_dim, frames, size, options, ring, ulysses, install_first, exact):
    from diffusers import ContextParallelConfig

    whole = tiny_wan(head_dim).to(device, dtype)
    whole_attns = la_diffusers.install(whole, **options)
    want = sample(whole, frames, size, device, dtype)

    model = tiny_wan(head_dim).to(device, dtype)
    if install_first:
        attns = la_diffusers.install(model, **options)
    model.enable_parallelism(config=ContextParallelConfig(ring_degree=ring, ulysses_degree=ulysses))
    if not install_first:
        attns = la_diffusers.install(model, **options)
    got = sample(model, frames, size, device, dtype)

    # diffusers' mesh is (ring, Ulysses): the rank's query rows are the ring rank's share of the
    # sequence, its heads the Ulysses rank's share of the heads.
    ring_rank, ulysses_rank = divmod(rank, ulysses)
    heads = slice(ulysses_rank * HEADS // ulysses, (ulysses_rank + 1) * HEADS // ulysses)
    for layer, (mine, ref) in enumerate(zip(attns, whole_attns)):
        for branch in (0, 1):
            # Every pass reached the rank's LiteAttention, with the rank's heads.
            assert mine.stats_for(branch).calls == 3, f"rank {rank} layer {layer} branch {branch}: not routed"
            mask, ref_mask = mine.state(branch).tile_mask(), ref.state(branch).tile_mask()
            query_tiles = ref_mask.shape[2] // ring
            rows = slice(ring_rank * query_tiles, (ring_rank + 1) * query_tiles)
            assert mask.shape == (1, HEADS // ulysses, query_tiles, ref_mask.shape[3])
            if exact:
                assert (mask == ref_mask[:, heads, rows]).all(), f"rank {rank} layer {layer} branch {branch}: masks"
    if exact:
        assert max(a.stats_for(0).sparsity for a in whole_attns) > 0  # the masks mattered
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    else:
        assert ((got.float() - want.float()).norm() / want.float().norm()).item() < 2e-2


def check_fall_through(rank, device, head_dim, frames, size, options, **config):
    """A context-parallel variant LiteAttention does not run (uneven shards): every call goes to
    diffusers' own attention, and the latents equal the whole model's without LiteAttention."""
    from diffusers import ContextParallelConfig

    want = sample(tiny_wan(head_dim).to(device), frames, size, device, torch.float32)
    model = tiny_wan(head_dim).to(device)
    attns = la_diffusers.install(model, **options)
    model.enable_parallelism(config=ContextParallelConfig(**config))
    got = sample(model, frames, size, device, torch.float32)
    assert all(not a.branches for a in attns), f"rank {rank}: a call reached LiteAttention"
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)


def rank_main(rank, init_file, backend, case):
    device = "cpu"
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    else:
        # diffusers gives the rank the device rank % torch.accelerator.device_count(), which is
        # 0 on a machine without an accelerator: count the CPU as one.
        torch.accelerator.device_count = lambda: 1
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank,
                            world_size=case["ring"] * case["ulysses"])
    try:
        if case.get("fall_through"):
            check_fall_through(rank, device, **case["fall_through"])
        else:
            check_rank(rank, device, **case)
    finally:
        dist.destroy_process_group()


def spawn(tmp_path, backend, case):
    mp.spawn(rank_main, args=(str(tmp_path / "rendezvous"), backend, case), nprocs=case["ring"] * case["ulysses"])


CPU_CASE = dict(dtype=torch.float32, head_dim=32, frames=3, size=16, options=dict(threshold=-0.5, cpu_tile=(16, 16)),
                exact=True)


@pytest.mark.parametrize("install_first", [True, False])
def test_ulysses_runs_on_lite_attention_on_the_cpu(tmp_path, install_first):
    """fp32 on the CPU reference with 16 x 16 tiles, two ranks: the ranks' masks equal the whole
    run's for their heads bit for bit, and the sampled latents match."""
    spawn(tmp_path, "gloo", dict(CPU_CASE, ring=1, ulysses=2, install_first=install_first))


@pytest.mark.parametrize("ring, ulysses", [(2, 1), (2, 2)], ids=["ring", "ring-x-ulysses"])
def test_ring_and_unified_run_on_lite_attention_on_the_cpu(tmp_path, ring, ulysses):
    """Ring (keys and values gathered, the rank's query rows attend to all of them), alone on two
    ranks and under Ulysses on four: masks equal the whole run's rows and heads, bit for bit."""
    spawn(tmp_path, "gloo", dict(CPU_CASE, ring=ring, ulysses=ulysses, install_first=True))


def test_what_runs_on_lite_attention_by_context_parallel_config():
    """The routing's reading of diffusers' config: Ulysses and ring degrees with their groups; the
    uneven-shard variants and a config without context parallelism fall through (None)."""
    from types import SimpleNamespace

    from lite_attention.integrations.diffusers._routing import _context_parallel_groups

    def config(ring=1, ulysses=1, **variants):
        mesh = SimpleNamespace(get_group=lambda: "group")
        return SimpleNamespace(context_parallel_config=SimpleNamespace(
            ring_degree=ring, ulysses_degree=ulysses, _mesh=mesh, _ring_mesh=mesh, _ulysses_mesh=mesh, **variants))

    assert _context_parallel_groups(config(ulysses=2)) == (("group", 2), (None, 1))
    assert _context_parallel_groups(config(ring=2)) == ((None, 1), ("group", 2))
    assert _context_parallel_groups(config(ring=2, ulysses=4)) == (("group", 4), ("group", 2))
    assert _context_parallel_groups(config(ulysses=2, ulysses_anything=True)) is None
    assert _context_parallel_groups(config(ring=2, ring_anything=True)) is None
    assert _context_parallel_groups(SimpleNamespace(context_parallel_config=None)) is None


@pytest.mark.gpu
def test_uneven_shard_variants_fall_through_to_diffusers_on_two_gpus(tmp_path):
    """(diffusers' ulysses_anything runs on CUDA only.)"""
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2 or not dist.is_nccl_available():
        pytest.skip("needs 2 GPUs and NCCL")
    fall_through = dict(head_dim=64, frames=5, size=32, options=dict(threshold=-6.0), ulysses_degree=2,
                        ulysses_anything=True)
    spawn(tmp_path, "nccl", dict(ring=1, ulysses=2, fall_through=fall_through))


@pytest.mark.gpu
@pytest.mark.parametrize("ring, ulysses", [(1, 2), (2, 1)], ids=["ulysses", "ring"])
def test_context_parallelism_runs_on_lite_attention_on_two_gpus(tmp_path, ring, ulysses):
    """bf16 on the Hopper or portable kernel, 1280 tokens: every pass routed with the rank's
    heads and rows, latents within bf16 distance of the whole run."""
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2 or not dist.is_nccl_available():
        pytest.skip("needs 2 GPUs and NCCL")
    spawn(tmp_path, "nccl", dict(dtype=torch.bfloat16, head_dim=64, frames=5, size=32, options=dict(threshold=-6.0),
                                 ring=ring, ulysses=ulysses, install_first=True, exact=False))
