"""Two GPUs in one process: calls on a GPU that is not the current one run there, keep their
state there and leave the current device alone; sequence-parallel splits spread over two GPUs
merge to the result of the splits on one. Skipped on machines with fewer than two GPUs that run
a liteattn kernel."""
import pytest

torch = pytest.importorskip("torch")

import lite_attention as la  # noqa: E402
from conftest import reference, rel_l1, torch_drifting  # noqa: E402


def _two_gpus_with_a_kernel():
    if not la.cuda_available() or torch.cuda.device_count() < 2:
        return False
    return all({"sm90", "sm80"} & set(la.available_backends(i)) for i in (0, 1))


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _two_gpus_with_a_kernel(), reason="needs two GPUs that run a liteattn kernel"),
]


def drifting(step):
    """bf16 (1, 2000, 4, 128) inputs on the CPU, drifting over the steps."""
    return torch_drifting(step, L=2000, H=4, D=128, dtype=torch.bfloat16)


def dense_error(out, q, k, v):
    """Relative L1 error of out against fp64 dense attention on the same (rounded) inputs."""
    expected, _ = reference(*(t.float().numpy() for t in (q, k, v)))
    return rel_l1(out.float().cpu().numpy(), expected)


def test_calls_on_the_second_gpu_match_the_first_and_leave_the_current_device():
    on_first = la.LiteAttention(threshold=-6.0)
    on_second = la.LiteAttention(threshold=-6.0)
    with torch.cuda.device(0):
        for step in range(3):
            q, k, v = drifting(step)
            first = on_first(*(t.to("cuda:0") for t in (q, k, v)))
            second = on_second(*(t.to("cuda:1") for t in (q, k, v)))
            assert torch.cuda.current_device() == 0, "the call left the current device switched"
            assert second.device == torch.device("cuda:1")
            if step == 0:  # the first skipping call computes every tile: dense attention
                assert dense_error(first, q, k, v) < 1e-2
            torch.cuda.synchronize(0)
            torch.cuda.synchronize(1)
            assert torch.equal(first, second.to("cuda:0")), f"step {step}: outputs differ between the GPUs"
            assert (on_first.state().read_mask() == on_second.state().read_mask()).all()
    assert on_second.stats.sparsity == on_first.stats.sparsity > 0


def test_sequence_parallel_splits_on_two_gpus_merge_like_splits_on_one():
    spread = la.SeqParallelLiteAttention(num_splits=2, threshold=-6.0)
    together = la.SeqParallelLiteAttention(num_splits=2, threshold=-6.0)
    with torch.cuda.device(0):
        for step in range(3):
            q, k, v = drifting(step)
            half = k.shape[1] // 2
            parts = [(k[:, :half], v[:, :half]), (k[:, half:], v[:, half:])]
            outs, lses, ref_outs, ref_lses = [], [], [], []
            for split, (k_i, v_i) in enumerate(parts):
                device = f"cuda:{split}"
                o, lse = spread(q.to(device), k_i.to(device), v_i.to(device), split, return_softmax_lse=True)
                outs.append(o.to("cuda:0"))
                lses.append(lse.to("cuda:0"))
                o, lse = together(q.to("cuda:0"), k_i.to("cuda:0"), v_i.to("cuda:0"), split, return_softmax_lse=True)
                ref_outs.append(o)
                ref_lses.append(lse)
            merged = la.merge_attention(outs, lses)
            expected = la.merge_attention(ref_outs, ref_lses)
            assert torch.equal(merged, expected), f"step {step}: the spread splits merge differently"
            if step == 0:  # nothing skipped yet: the merge is dense attention over all keys
                assert dense_error(merged, q, k, v) < 1e-2
    assert spread.stats_for(split_idx=1).sparsity == together.stats_for(split_idx=1).sparsity > 0
