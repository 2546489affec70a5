"""Ulysses sequence parallelism over torch.distributed: ranks started with torch.multiprocessing
(gloo on the CPU, NCCL on two GPUs), each holding a sequence shard for every head, against one
LiteAttention over the whole sequence in the same process, on the synthetic video workload. Per
head the work is the same, so outputs, LSEs and skip masks must be equal bit for bit."""
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():
    pytest.skip("this torch has no torch.distributed", allow_module_level=True)

import torch.multiprocessing as mp  # noqa: E402

import lite_attention as la  # noqa: E402
from lite_attention import LiteAttention  # noqa: E402
from lite_attention.integrations.ulysses import UlyssesLiteAttention  # noqa: E402

RANKS = 2


def video_step(step, video, dtype, device):
    """q, k, v of one denoising step of the project's synthetic video workload, one seed per batch
    row (every rank draws the same); video: batch, frames, height, width, heads, head_dim."""
    video = dict(video)
    batch = video.pop("batch")
    like = torch.empty(0, device=device)
    rows = [la.VideoWorkload(**video, steps=4, seed=b).generate(step, dtype, like) for b in range(batch)]
    return tuple(torch.cat(parts) for parts in zip(*rows))


def check_rank(rank, video, kv_heads, dtype, device, options):
    """Three steps on two branches: this rank's shard against the whole-sequence run."""
    ulysses, whole = UlyssesLiteAttention(**options), LiteAttention(**options)
    for step in range(3):
        q, k, v = video_step(step, video, dtype, device)
        k, v = k[:, :, :kv_heads].contiguous(), v[:, :, :kv_heads].contiguous()  # GQA when kv_heads < heads
        batch, length, heads = q.shape[:3]
        shard = slice(rank * length // RANKS, (rank + 1) * length // RANKS)
        mine = slice(rank * heads // RANKS, (rank + 1) * heads // RANKS)
        for branch in ("cond", "uncond"):
            scale = None if branch == "cond" else 0.05
            out, lse = ulysses(q[:, shard], k[:, shard], v[:, shard], scale, True, must_do_list=[(0, 8)],
                               branch=branch)
            ref_out, ref_lse = whole(q, k, v, scale, True, must_do_list=[(0, 8)], branch=branch)
            assert out.shape == q[:, shard].shape and lse.shape == (batch, heads, length // RANKS)
            assert torch.equal(out, ref_out[:, shard]), f"rank {rank} step {step} {branch}: out differs"
            assert torch.equal(lse, ref_lse[:, :, shard]), f"rank {rank} step {step} {branch}: lse differs"
            mask, ref_mask = ulysses.state(branch).tile_mask(), whole.state(branch).tile_mask()
            assert (mask == ref_mask[:, mine]).all(), f"rank {rank} step {step} {branch}: masks differ"
    assert whole.stats_for("cond").sparsity > 0  # the comparison covered skipped tiles


def rank_main(rank, init_file, backend, video, kv_heads, dtype, options):
    device = "cpu"
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=RANKS)
    try:
        check_rank(rank, video, kv_heads, dtype, device, options)
        heads = video["heads"] + 1  # not a multiple of the ranks
        x = torch.randn(1, 8, heads, video["head_dim"], device=device).to(getattr(torch, dtype))
        with pytest.raises(ValueError, match=rf"query: expected heads divisible by the group's {RANKS} ranks, got {heads}"):
            UlyssesLiteAttention(**options)(x, x, x)
    finally:
        dist.destroy_process_group()


def spawn(tmp_path, backend, video, kv_heads, dtype, options):
    mp.spawn(rank_main, args=(str(tmp_path / "rendezvous"), backend, video, kv_heads, dtype, options), nprocs=RANKS)


def test_ulysses_shards_match_the_whole_sequence_on_the_cpu(tmp_path):
    """A batch of two, and GQA: 4 query heads over 2 key/value heads (one per rank)."""
    video = dict(batch=2, frames=3, height=4, width=8, heads=4, head_dim=32)  # 96 tokens
    spawn(tmp_path, "gloo", video, 2, "float32", dict(threshold=-2.0, cpu_tile=(16, 16)))


def outside_rank_main(rank, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=RANKS)
    try:
        group = dist.new_group([0])  # every rank creates it; rank 1 is not a member
        if rank == 1:
            x = torch.randn(1, 8, 4, 32)
            with pytest.raises(ValueError, match="^group: this rank .* is not a member of the process group"):
                UlyssesLiteAttention(group=group)(x, x, x)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_a_group_without_this_rank_is_named(tmp_path):
    mp.spawn(outside_rank_main, args=(str(tmp_path / "rendezvous"),), nprocs=RANKS)


def test_without_an_initialized_group_the_call_says_so():
    x = torch.randn(1, 8, 2, 32)
    with pytest.raises(RuntimeError, match="torch.distributed is not initialized"):
        UlyssesLiteAttention()(x, x, x)


def test_shards_must_be_torch_tensors(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        x = torch.randn(1, 8, 2, 32)
        with pytest.raises(TypeError, match="key: expected a torch.Tensor"):
            UlyssesLiteAttention()(x, x.numpy(), x)
    finally:
        dist.destroy_process_group()


@pytest.mark.gpu
def test_ulysses_shards_match_the_whole_sequence_on_two_gpus(tmp_path):
    if not torch.cuda.is_available() or torch.cuda.device_count() < RANKS or not dist.is_nccl_available():
        pytest.skip(f"needs {RANKS} GPUs and NCCL")
    video = dict(batch=1, frames=8, height=16, width=16, heads=4, head_dim=128)  # 2048 tokens
    spawn(tmp_path, "nccl", video, 4, "bfloat16", dict(threshold=-6.0))
