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


def _ranks(group) -> int:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("UlyssesLiteAttention: torch.distributed is not initialized "
                           "(call torch.distributed.init_process_group first)")
    return dist.get_world_size(group)


def _all_to_all(x, group):
    """x: (P, ...) contiguous, slice p sent to rank p; returns (P, ...), slice p from rank p."""
    import torch
    import torch.distributed as dist

    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)
    return out


def _check_shard(x, ranks: int, name: str) -> None:
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (torch.distributed moves the shards), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a (batch, seq_len, heads, head_dim) tensor, got shape {tuple(x.shape)}")
    if x.shape[2] % ranks:
        raise ValueError(f"{name}: expected heads divisible by the group's {ranks} ranks, got {x.shape[2]}")


def _sequence_to_heads(x, ranks: int, group):
    """(B, L/P, H, D) sequence shard -> (B, L, H/P, D): the whole sequence, this rank's heads."""
    b, shard, heads, d = x.shape
    parts = x.reshape(b, shard, ranks, heads // ranks, d).permute(2, 0, 1, 3, 4).contiguous()
    gathered = _all_to_all(parts, group)  # (P, B, L/P, H/P, D): sequence shard p from rank p
    return gathered.permute(1, 0, 2, 3, 4).reshape(b, ranks * shard, heads // ranks, d)


def _heads_to_sequence(x, ranks: int, group):
    """(B, L, H/P, D) -> (B, L/P, H, D): this rank's sequence shard, every head."""
    b, length, heads, d = x.shape
    parts = x.reshape(b, ranks, length // ranks, heads, d).permute(1, 0, 2, 3, 4).contiguous()
    gathered = _all_to_all(parts, group)  # (P, B, L/P, H/P, D): head group p from rank p
    return gathered.permute(1, 2, 0, 3, 4).reshape(b, length // ranks, ranks * heads, d)


def _lse_to_sequence(lse, ranks: int, group):
    """(B, H/P, L) -> (B, H, L/P)."""
    b, heads, length = lse.shape
    parts = lse.reshape(b, heads, ranks, length // ranks).permute(2, 0, 1, 3).contiguous()
    gathered = _all_to_all(parts, group)  # (P, B, H/P, L/P): head group p from rank p
    return gathered.permute(1, 0, 2, 3).reshape(b, ranks * heads, length // ranks)


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
        q, k, v = (_sequence_to_heads(x, ranks, self.group) for x in (query, key, value))
        result = super().__call__(q, k, v, scale, return_softmax_lse, must_do_list, must_skip_list, branch=branch,
                                  dense_queries=dense_queries)
        if return_softmax_lse:
            out, lse = result
            return _heads_to_sequence(out, ranks, self.group), _lse_to_sequence(lse, ranks, self.group)
        return _heads_to_sequence(result, ranks, self.group)

    forward = __call__
