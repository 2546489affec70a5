"""Load imbalance of the Hopper kernel's work-tile schedules, simulated (no GPU needed).

A skipping call gives each work tile (b, h, query tile) a different number of visited key
tiles. This script draws them from independent random masks (Binomial(k_tiles, 1 - s), as
bench/sm90's random-mask points do), adds a fixed cost per work tile, and reports how much
longer than an even split of the work the slowest CTA runs under
  - round robin: CTA c runs work tiles c, c + ctas, c + 2 ctas, ... (the static schedule),
  - a shared counter: a CTA takes its next work tile `ahead` work tiles before it needs it
    (ahead = 1: when it starts the previous one), in index order, and
  - the counter in the Hopper kernel's work order (src/sm90/work_order.hpp): each CTA's first
    work tile in index order, then heads by their total work after that first round, largest
    first, query tiles in index order, the last `--tail-rounds` rounds of positions re-sorted by
    work, largest first.
With --head-spread > 0 each head keeps its own fraction of key tiles (a lognormal spread around
1 - s, as heads differ in a video model), not one fraction for all.

usage: python3 bench/schedule_imbalance.py [--L 8192] [--heads 40] [--ctas 132] [--tile 128x144]
"""
import argparse
import heapq

import numpy as np


def round_robin(work: np.ndarray, ctas: int) -> float:
    per_cta = np.bincount(np.arange(work.size) % ctas, weights=work, minlength=ctas)
    return float(per_cta.max())


def shared_counter(work: np.ndarray, ctas: int, ahead: int) -> float:
    """Makespan when each CTA keeps `ahead` work tiles reserved beyond the one it runs."""
    ctas = min(ctas, work.size)  # no more CTAs than work tiles, as the kernel's launch
    queues = [[c] for c in range(ctas)]  # every CTA's first work tile is its own index
    taken = ctas
    for queue in queues:
        for _ in range(ahead - 1):
            if taken < work.size:
                queue.append(taken)
                taken += 1
    events = [(0.0, c) for c in range(ctas)]
    finish = 0.0
    while events:
        now, c = heapq.heappop(events)
        if not queues[c]:
            finish = max(finish, now)
            continue
        tile = queues[c].pop(0)
        if taken < work.size:  # starting a work tile reserves the next one
            queues[c].append(taken)
            taken += 1
        heapq.heappush(events, (now + work[tile], c))
    return finish


def work_order(work: np.ndarray, q_tiles: int, ctas: int, tail_rounds: int) -> np.ndarray:
    """The work tiles' costs in the order the kernel runs them: CTA c's first work tile is c (it
    starts while the order is written), then the order (src/sm90/work_order.cu) of the others: pairs
    by their work after that first round, the last tail_rounds * ctas positions by work."""
    first = min(ctas, work.size)
    later = np.arange(work.size) >= first
    heads = np.argsort(-np.where(later, work, 0).reshape(-1, q_tiles).sum(axis=1), kind="stable")
    order = np.arange(work.size).reshape(-1, q_tiles)[heads].reshape(-1)
    order = order[order >= first]
    tail = min(tail_rounds * ctas, order.size)
    if tail > 0:
        last = order[order.size - tail:]
        order = np.concatenate([order[: order.size - tail], last[np.argsort(-work[last], kind="stable")]])
    return work[np.concatenate([np.arange(first), order])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--L", type=int, default=8192)
    parser.add_argument("--heads", type=int, default=40)
    parser.add_argument("--ctas", type=int, default=132, help="SMs of the card (H100 SXM: 132)")
    parser.add_argument("--tile", default="128x144", help="query x key tile")
    parser.add_argument("--fixed", type=float, default=1.0, help="cost of a work tile beyond its key tiles, in key tiles")
    parser.add_argument("--tail-rounds", type=int, default=4, help="the work order's sorted tail, in rounds")
    parser.add_argument("--head-spread", type=float, default=0.0, help="sigma of the heads' log keep fractions")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    tile_m, tile_n = (int(x) for x in args.tile.split("x"))
    q_tiles, k_tiles = -(-args.L // tile_m), -(-args.L // tile_n)
    work_tiles = q_tiles * args.heads
    rng = np.random.default_rng(args.seed)
    print(f"L={args.L} H={args.heads}: {work_tiles} work tiles of {k_tiles} key tiles over {args.ctas} CTAs; "
          f"slowest CTA over an even split, mean of {args.trials} trials")
    print("sparsity  round robin  counter, 2 ahead  counter, 1 ahead  work order, 2 ahead")
    for sparsity in (0.0, 0.25, 0.5, 0.75, 0.9):
        excess = {"rr": [], "ahead2": [], "ahead1": [], "ordered": []}
        for _ in range(args.trials):
            keep = np.full(args.heads, 1.0 - sparsity)
            if args.head_spread > 0:
                keep = np.clip(keep * rng.lognormal(0.0, args.head_spread, args.heads), 0.0, 1.0)
            work = rng.binomial(k_tiles, np.repeat(keep, q_tiles)) + args.fixed
            even = work.sum() / args.ctas
            excess["rr"].append(round_robin(work, args.ctas) / even - 1)
            excess["ahead2"].append(shared_counter(work, args.ctas, 2) / even - 1)
            excess["ahead1"].append(shared_counter(work, args.ctas, 1) / even - 1)
            ordered = work_order(work, q_tiles, args.ctas, args.tail_rounds)
            excess["ordered"].append(shared_counter(ordered, args.ctas, 2) / even - 1)
        print(f"{sparsity:8.2f}  {100 * np.mean(excess['rr']):10.1f}%  {100 * np.mean(excess['ahead2']):15.1f}%"
              f"  {100 * np.mean(excess['ahead1']):15.1f}%  {100 * np.mean(excess['ordered']):18.1f}%")


if __name__ == "__main__":
    main()
