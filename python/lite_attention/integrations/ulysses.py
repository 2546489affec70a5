"""Ulysses sequence parallelism (all-to-all over heads, as in DeepSpeed-Ulysses and xDiT) with
LiteAttention, over torch.distributed.

Each rank holds a contiguous shard of the sequence for every head, (B, L / P, H, D) on P ranks.
An all-to-all gives each rank the whole sequence for H / P heads, (B, L, H / P, D); the rank's
LiteAttention runs there and keeps the skip states of those heads; a second all-to-all returns
the output to (B, L / P, H, D)::

    from lite_attention.integrations.ulysses import UlyssesLiteAttention

    attn = UlyssesLiteAttention(group=None, threshold=-10.0)   # one per layer and rank
    out = attn(q_shard, k_shard, v_shard, branch="cond")        # shards of rank r: positions r*L/P ..

Contract: every rank calls with a shard of the same length (pad the sequence to a multiple of P),
H and the key/value heads are multiples of P, and ranks hold the shards in rank order. Token
ranges (must_do_list, must_skip_list, dense_queries) are positions in the whole sequence. The
skip state is per rank (its heads), so a rank's sparsity statistics cover its heads only.
"""
from __future__ import annotations

from typing import Hashable, Optional

from ..attention import LiteAttention
from ._collectives import heads_to_sequence, lse_to_sequence, sequence_to_heads


def _ranks(group) -> int:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("UlyssesLiteAttention: torch.distributed is not initialized "
                           "(call torch.distributed.init_process_group first)")
    if dist.get_rank(group) < 0:  # torch answers -1 (and a world size of -1) for a group without this rank
        raise ValueError(f"group: this rank (global rank {dist.get_rank()}) is not a member of the process group")
    return dist.get_world_size(group)


def _check_shard(x, ranks: int, name: str) -> None:
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (torch.distributed moves the shards), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a (batch, seq_len, heads, head_dim) tensor, got shape {tuple(x.shape)}")
    if x.shape[2] % ranks:
        raise ValueError(f"{name}: expected heads divisible by the group's {ranks} ranks, got {x.shape[2]}")


class UlyssesLiteAttention(LiteAttention):
    """LiteAttention on sequence shards under Ulysses parallelism (see the module's text).
    Takes LiteAttention's arguments, and group: the torch.distributed process group (None: the
    default group)."""

    def __init__(self, *args, group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.group = group

    def __call__(self, query, key, value, scale: Optional[float] = None, return_softmax_lse: bool = False,
                 must_do_list=None, must_skip_list=None, *, branch: Optional[Hashable] = None, dense_queries=None):
        ranks = _ranks(self.group)
        # Every check before the first collective: a rank that raised after it would leave the
        # others waiting in the all-to-all.
        for x, name in ((query, "query"), (key, "key"), (value, "value")):
            _check_shard(x, ranks, name)
        q, k, v = (sequence_to_heads(x, ranks, self.group) for x in (query, key, value))
        result = super().__call__(q, k, v, scale, return_softmax_lse, must_do_list, must_skip_list, branch=branch,
                                  dense_queries=dense_queries)
        if return_softmax_lse:
            out, lse = result
            return heads_to_sequence(out, ranks, self.group), lse_to_sequence(lse, ranks, self.group)
        return heads_to_sequence(result, ranks, self.group)

    forward = __call__
