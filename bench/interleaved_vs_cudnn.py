#!/usr/bin/env python3
"""Dense attention against cuDNN SDPA, call by call, in one thermal state.

bench_sm90.py times our series, then cuDNN's: on a card that runs at its power limit the two
series can hold different clocks. This script alternates the calls instead: for each shape it
times, in turn, a dense lite_attention call (Hopper kernel, through the Python API on torch
tensors) and cuDNN SDPA on the same (B, L, H, D) inputs, viewed as (B, H, L, D) as a video DiT
does, and on contiguous (B, H, L, D) copies (cuDNN's own layout), each call with CUDA events
after a spin kernel, so every series sees the same clocks. bf16, head dim 128, random inputs.

usage: python3 bench/interleaved_vs_cudnn.py [--shapes "1,32760,40;1,8192,40"] [--calls 15] [--out FILE.json]
"""
import argparse
import json
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import lite_attention as la


def timed(fn):
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(600_000)  # the GPU stays busy while the host enqueues
    start.record()
    fn()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="1,32760,40;1,32760,12;1,75600,40;1,8192,40")
    ap.add_argument("--calls", type=int, default=15, help="timed calls per series and shape")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not la.cuda_available() or "sm90" not in la.available_backends():
        raise SystemExit("needs an sm90 GPU and a CUDA build of lite_attention")

    dim = 128
    sdpa = torch.nn.functional.scaled_dot_product_attention
    rows = []
    for shape in args.shapes.split(";"):
        b, l, h = (int(x) for x in shape.split(","))
        flops = 4 * b * h * l * l * dim
        torch.manual_seed(0)
        q, k, v = (torch.randn(b, l, h, dim, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        viewed = [t.transpose(1, 2) for t in (q, k, v)]
        contiguous = [t.contiguous() for t in viewed]
        series = {
            "liteattn": lambda: la.attention(q, k, v, backend="sm90"),
            "cudnn_viewed": lambda: sdpa(*viewed),
            "cudnn_contiguous": lambda: sdpa(*contiguous),
        }
        with torch.no_grad(), sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            t_end = time.time() + 2.0  # warm-up: every series, and the clocks settle
            while time.time() < t_end:
                for fn in series.values():
                    fn()
                torch.cuda.synchronize()
            times = {name: [] for name in series}
            for _ in range(args.calls):
                for name, fn in series.items():
                    times[name].append(timed(fn))
        row = {"B": b, "L": l, "H": h, "ms": times}
        row["median_tflops"] = {name: flops / statistics.median(ts) * 1e-9 for name, ts in times.items()}
        best_cudnn = min(statistics.median(times["cudnn_viewed"]), statistics.median(times["cudnn_contiguous"]))
        row["ratio_vs_cudnn_viewed"] = statistics.median(times["cudnn_viewed"]) / statistics.median(times["liteattn"])
        row["ratio_vs_best_cudnn"] = best_cudnn / statistics.median(times["liteattn"])
        rows.append(row)
        tf = row["median_tflops"]
        print(f"{b},{l},{h}: liteattn {tf['liteattn']:.0f}, cuDNN viewed {tf['cudnn_viewed']:.0f}, cuDNN contiguous "
              f"{tf['cudnn_contiguous']:.0f} TFLOP/s; ours / cuDNN viewed {row['ratio_vs_cudnn_viewed']:.3f}x, "
              f"/ best cuDNN {row['ratio_vs_best_cudnn']:.3f}x", flush=True)
        del q, k, v, viewed, contiguous, series
        torch.cuda.empty_cache()
    env = {"card": torch.cuda.get_device_name(), "torch": torch.__version__, "cudnn": torch.backends.cudnn.version()}
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"env": env, "calls": args.calls, "shapes": rows}, f, indent=1)


if __name__ == "__main__":
    main()
