#!/usr/bin/env python3
"""Calibrated threshold schedules for `liteattn evaluate --schedules` (issue 6, part 3).

Runs lite_attention.calibrate() on the synthetic video workload (bf16 inputs, the demo's CPU
tile 64 x 64 on the reduced default shape) for a sweep of error budgets, and saves one schedule
per (criterion, order, budget) as JSON that the C++ ThresholdSchedule reads:

    python3 bench/calibrate_schedules.py --out-dir bench/results/schedules \
        --criterion running --order alternate --budgets 1e-4,3e-4,1e-3,3e-3,1e-2

then evaluate them next to the constant thresholds with the same criterion and order:

    build-eval/tools/liteattn evaluate --criteria running --orders alternate \
        --thresholds ... --schedules bench/results/schedules/running_alternate_b0.0001.json,...

The budget is calibrate()'s: relative L1 of the layer output against dense at the last step,
linearly tighter (budget/4) at the first step.
"""
import argparse
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="bench/results/schedules")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--criterion", default="running")
    ap.add_argument("--order", default="alternate")
    ap.add_argument("--budgets", default="1e-4,3e-4,1e-3,3e-3,1e-2")
    ap.add_argument("--tile", type=int, default=64, help="CPU tile (the demo's 64 on the reduced shape)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    import torch
    import lite_attention as la

    workload = la.VideoWorkload(args.preset)
    like = torch.empty(0)
    # The CLI evaluates bf16 inputs; calibrate() gets the bf16-rounded inputs as fp32 (the same
    # logits, an fp32 output instead of a bf16-rounded one), as when docs/evaluation.md's schedules
    # were recorded: relative_l1 could not read bf16 torch tensors then (it widens them now).
    trajectory = lambda s: tuple(x.float() for x in workload.generate(s, "bfloat16", like=like))
    os.makedirs(args.out_dir, exist_ok=True)
    paths = []
    for b in (float(x) for x in args.budgets.split(",")):
        r = la.calibrate(trajectory, workload.steps, budget=b, criterion=args.criterion, order=args.order,
                         cpu_tile=(args.tile, args.tile), cpu_threads=args.threads, verbose=args.verbose)
        path = os.path.join(args.out_dir, f"{args.criterion}_{args.order}_b{b:g}.json")
        r.save(path)
        paths.append(path)
        print(f"budget {b:g}: {r!r}; thresholds {list(r.schedule.thresholds)} -> {path}", file=sys.stderr)
    print(",".join(paths))


if __name__ == "__main__":
    main()
