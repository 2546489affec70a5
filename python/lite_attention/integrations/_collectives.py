"""Sequence-parallel collectives over torch.distributed for (B, L, H, D) tensors whose ranks hold
contiguous sequence shards in rank order: Ulysses' all-to-alls between sequence shards and head
groups, and the all-gather of a sequence."""
from __future__ import annotations


def all_to_all(x, group):
    """x: (P, ...) contiguous, slice p sent to rank p; returns (P, ...), slice p from rank p."""
    import torch
    import torch.distributed as dist

    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)
    return out


def sequence_to_heads(x, ranks: int, group):
    """(B, L/P, H, D) sequence shard -> (B, L, H/P, D): the whole sequence, this rank's heads."""
    b, shard, heads, d = x.shape
    parts = x.reshape(b, shard, ranks, heads // ranks, d).permute(2, 0, 1, 3, 4).contiguous()
    gathered = all_to_all(parts, group)  # (P, B, L/P, H/P, D): sequence shard p from rank p
    return gathered.permute(1, 0, 2, 3, 4).reshape(b, ranks * shard, heads // ranks, d)


def heads_to_sequence(x, ranks: int, group):
    """(B, L, H/P, D) -> (B, L/P, H, D): this rank's sequence shard, every head."""
    b, length, heads, d = x.shape
    parts = x.reshape(b, ranks, length // ranks, heads, d).permute(1, 0, 2, 3, 4).contiguous()
    gathered = all_to_all(parts, group)  # (P, B, L/P, H/P, D): head group p from rank p
    return gathered.permute(1, 2, 0, 3, 4).reshape(b, length // ranks, ranks * heads, d)


def lse_to_sequence(lse, ranks: int, group):
    """(B, H/P, L) -> (B, H, L/P)."""
    b, heads, length = lse.shape
    parts = lse.reshape(b, heads, ranks, length // ranks).permute(2, 0, 1, 3).contiguous()
    gathered = all_to_all(parts, group)  # (P, B, H/P, L/P): head group p from rank p
    return gathered.permute(1, 0, 2, 3).reshape(b, ranks * heads, length // ranks)


def gather_sequence(x, ranks: int, group):
    """(B, L/P, H, D) sequence shard -> (B, L, H, D): every rank's shard, in rank order."""
    import torch
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(ranks)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=1)
