#!/usr/bin/env python3
"""Hopper kernel benchmark (issue 5): the project's dense, detection-on and sparse calls
(bench/sm90/bench_sm90.cu, through the public C++ API) against PyTorch's cuDNN SDPA on the same
shapes, in the same run, on the same card. Sparse calls come in two series: "sparse" reads random
masks, "workload_sparse" reads masks the kernel wrote on the synthetic video workload (a
mid-trajectory step, thresholds searched for the target sparsities; its limits use the dense time
on the workload inputs, "workload.dense_ms"). Writes bench/results/sm90_<date>_<rev>.json and,
where matplotlib is installed, a PNG of time against sparsity with both series, the ideal line
and cuDNN's time.

usage: python3 bench/bench_sm90.py --bench build/bench/sm90/liteattn_bench_sm90 [--repeats 7]
       [--shapes "1,32760,40;1,32760,12;1,75600,40;1,8192,40"] [--out bench/results] [--no-workload]
TFLOP/s = 4*B*H*L*L*D / time (forward, non-causal).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

DEFAULT_SHAPES = "1,32760,40;1,32760,12;1,75600,40;1,8192,40"


class ClockSampler:
    """Samples the GPU's SM clock (MHz), power draw (W) and utilization every 250 ms through
    nvidia-smi while a series runs: these cards hit their power limit under attention, so a
    series' speed goes with the clock it held, and runs on different machines compare only
    alongside it. summary() gives the medians over the busy samples (utilization >= 90 %: the
    series also spends seconds on the host, generating the workload, with the GPU idle; where the
    card reports no utilization, e.g. under MIG, every sample counts), or None where nvidia-smi is
    missing or printed nothing usable."""

    BUSY_PERCENT = 90.0

    def __enter__(self):
        try:
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=clocks.sm,power.draw,utilization.gpu",
                                          "--format=csv,noheader,nounits", "-lms", "250"],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            self.proc = None
        self.lines = []
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            self.lines = self.proc.communicate()[0].splitlines()

    def summary(self):
        clocks, watts, samples = [], [], 0
        for line in self.lines:
            fields = [f.strip() for f in line.split(",")]
            try:
                clock, power = float(fields[0]), float(fields[1])
            except (IndexError, ValueError):
                continue  # "[N/A]" or a partial line at termination
            try:
                busy = float(fields[2])
            except (IndexError, ValueError):
                busy = 100.0  # no utilization reading: keep the sample
            samples += 1
            if busy >= self.BUSY_PERCENT:
                clocks.append(clock)
                watts.append(power)
        if not clocks:
            return None
        median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        return {"samples": samples, "busy_samples": len(clocks), "sm_clock_mhz_median": median(clocks),
                "power_w_median": median(watts)}


def cudnn_times(shapes, dim, repeats):
    """Median ms of torch SDPA with only the cuDNN backend enabled, bf16, (B, L, H, D) inputs."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    results = {}
    for (b, l, h) in shapes:
        torch.manual_seed(0)
        q0 = torch.randn(b, l, h, dim, device="cuda", dtype=torch.bfloat16)
        t_end = time.time() + 1.0  # warm-up: let the clocks settle
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            while time.time() < t_end:
                torch.nn.functional.scaled_dot_product_attention(q0.transpose(1, 2), q0.transpose(1, 2), q0.transpose(1, 2))
                torch.cuda.synchronize()
        del q0
        # (B, L, H, D) storage like the project's inputs, viewed as (B, H, L, D) for SDPA.
        q, k, v = (torch.randn(b, l, h, dim, device="cuda", dtype=torch.bfloat16).transpose(1, 2) for _ in range(3))
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            for r in range(repeats + 2):
                torch.cuda._sleep(600_000)  # keep the GPU busy while the host enqueues (as the C++ bench)
                start.record()
                torch.nn.functional.scaled_dot_product_attention(q, k, v)
                stop.record()
                torch.cuda.synchronize()
                if r >= 2:
                    times.append(start.elapsed_time(stop))
        times.sort()
        results[(b, l, h)] = times[len(times) // 2]
        del q, k, v
        torch.cuda.empty_cache()
    return results


def environment():
    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except Exception:
            return "unknown"
    smi = run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]).split("\n")[0]
    name, _, driver = smi.partition(", ")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # LITEATTN_GIT_REV wins: a copy of the tree sent to a GPU machine may carry a stale .git.
    rev = os.environ.get("LITEATTN_GIT_REV") or run(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    if "LITEATTN_GIT_REV" not in os.environ and rev != "unknown":
        dirty = run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"])
        if dirty not in ("", "unknown"):
            rev += "-dirty"
    import torch
    return {"card": name, "driver": driver, "git_rev": rev,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}


def plot(result, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return False
    shapes = result["shapes"]
    fig, axes = plt.subplots(1, len(shapes), figsize=(4.5 * len(shapes), 4), squeeze=False)
    for ax, s in zip(axes[0], shapes):
        xs = [0.0] + [p["sparsity"] for p in s["sparse"]]
        ys = [s["detect_ms"]] + [p["ms"] for p in s["sparse"]]
        ax.plot(xs, ys, "o-", label="liteattn, random masks")
        workload = s.get("workload_sparse")
        if workload:
            ax.plot([p["sparsity"] for p in workload], [p["ms"] for p in workload], "s-", color="tab:orange",
                    label=f"liteattn, workload masks (step {s['workload']['step']})")
        ax.plot([0, 1], [s["dense_ms"], 0], "k--", label="ideal (1-s) x dense")
        ax.axhline(s["dense_ms"], color="g", lw=1, label="liteattn dense")
        if s.get("cudnn_ms"):
            ax.axhline(s["cudnn_ms"], color="r", lw=1, label="cuDNN SDPA dense")
        ax.set_title(f"B={s['B']} L={s['L']} H={s['H']}")
        ax.set_xlabel("tile sparsity")
        ax.set_ylabel("ms")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, None)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{result['env']['card']} bf16 hd{result['head_dim']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def postprocess(result, cudnn):
    """Adds cuDNN's times (keyed by (B, L, H)) and each sparse point's meets_target to the C++ JSON."""
    for s in result["shapes"]:
        ms = cudnn.get((s["B"], s["L"], s["H"]))
        s["cudnn_ms"] = ms
        s["cudnn_tflops"] = s["flops"] / ms * 1e-9 if ms else None
        s["dense_vs_cudnn"] = ms / s["dense_ms"] if ms else None
        for p in s["sparse"] + s.get("workload_sparse", []):
            p["meets_target"] = p["ms"] <= p["limit_ms"]
    return result


def sparse_cells(points):
    """'s->ms(limit)TF/s' per point, '*' where the time misses the limit."""
    return "  ".join(f"{p['sparsity']:.2f}->{p['ms']:.2f}({p['limit_ms']:.2f}){p['tflops_on_computed']:.0f}"
                     f"{'' if p['meets_target'] else '*'}" for p in points)


def print_table(result):
    env = result["env"]
    print(f"card: {env['card']}  driver: {env['driver']}  rev: {env['git_rev']}  torch {env['torch']} cudnn {env['cudnn']}")
    # host us: a call right after a stream sync; empty us: an empty kernel's launch after the same
    # wait (the host's own wake-up); enq us: calls enqueued back to back.
    print(f"{'shape':>16} {'dense TF/s':>10} {'cuDNN TF/s':>10} {'x cuDNN':>8} {'detect ovh':>10} {'host us':>8} {'empty us':>8} {'enq us':>7}"
          "  sparse: s -> ms (limit) TF/s-on-computed, * = over the limit")
    for s in result["shapes"]:
        ct = f"{s['cudnn_tflops']:.0f}" if s["cudnn_tflops"] else "-"
        xr = f"{s['dense_vs_cudnn']:.3f}" if s["dense_vs_cudnn"] else "-"
        shape = f"{s['B']},{s['L']},{s['H']}"
        row = (f"{shape:>16} {s['dense_tflops']:>10.0f} {ct:>10} {xr:>8} {100 * s['detect_overhead']:>9.1f}% {s['host_overhead_us']:>8.1f}"
               f" {s.get('launch_after_sync_us', float('nan')):>8.1f} {s.get('host_enqueue_us', float('nan')):>7.1f}")
        print(f"{row}  random:     {sparse_cells(s['sparse'])}")
        if s.get("workload_sparse"):
            # Second line: the workload's grid and step under the numbers, then its series and thresholds.
            w = s["workload"]
            grid = f"workload {w['frames']}x{w['height']}x{w['width']}, step {w['step']}/{w['steps']}, dense {w['dense_tflops']:.0f} TF/s"
            print(f"{grid:>{len(row)}}  workload:   {sparse_cells(s['workload_sparse'])}")
            print(f"{'':>{len(row)}}  thresholds: " + "  ".join(f"{p['target']:.2f}:{p['threshold']:.3g}" for p in s["workload_sparse"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="path of liteattn_bench_sm90")
    ap.add_argument("--shapes", default=DEFAULT_SHAPES)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--no-cudnn", action="store_true")
    ap.add_argument("--no-workload", action="store_true", help="skip the workload-mask series (saves host generation time)")
    args = ap.parse_args()
    shapes = [tuple(int(x) for x in s.split(",")) for s in args.shapes.split(";")]

    with ClockSampler() as ours_clock:
        proc = subprocess.run([args.bench, "--shapes", args.shapes, "--dim", str(args.dim), "--repeats", str(args.repeats),
                               "--workload", "0" if args.no_workload else "1"],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        sys.exit(f"{args.bench} failed with exit code {proc.returncode}")
    print(proc.stderr, end="", file=sys.stderr)  # host overheads, workload generation and threshold search
    with ClockSampler() as cudnn_clock:
        cudnn = {} if args.no_cudnn else cudnn_times(shapes, args.dim, args.repeats)
    result = postprocess(json.loads(proc.stdout), cudnn)
    result["env"] = environment()
    # Medians over each series' busy samples: ours over the C++ benchmark's calls (dense, detection,
    # sparse, workload), cuDNN over its runs.
    result["clocks"] = {"liteattn": ours_clock.summary(), "cudnn": None if args.no_cudnn else cudnn_clock.summary()}

    os.makedirs(args.out, exist_ok=True)
    stamp = result["env"]["date"][:10]
    base = os.path.join(args.out, f"sm90_{stamp}_{result['env']['git_rev']}")
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1)
    plotted = plot(result, base + ".png")

    print_table(result)
    for series, c in result["clocks"].items():
        if c:
            print(f"{series}: SM clock median {c['sm_clock_mhz_median']:.0f} MHz, power median {c['power_w_median']:.0f} W"
                  f" ({c['busy_samples']} busy of {c['samples']} samples)")
    print("wrote", base + ".json", "and .png" if plotted else "(no plot)")


if __name__ == "__main__":
    main()
