#!/usr/bin/env python3
"""Host time per call of the Python API on CUDA tensors (issue 3 / issue 5's host budget).

Times back-to-back enqueues of a tiny LiteAttention call (the GPU work is a few microseconds, so
the wall time per call is the host path: argument checks, the torch op dispatch, the binding,
the C++ validate and the launch), eager and with skipping on, and the same call replayed from a
CUDA graph, and for scale PyTorch's cuDNN attention called eagerly on the same problem. Prints one
JSON object.

usage: python3 bench/python_overhead.py [--calls 200] [--L 256]
"""
import argparse
import contextlib
import json
import statistics
import time

import torch

import lite_attention as la


def per_call_us(fns, calls, batches=15):
    """Wall time per call of `calls` back-to-back calls of each function in `fns` (name -> function),
    over `batches` batches taken in turn (one batch of each, then the next), so that the host's
    drift reaches every series alike: {name: (median, best)}. The host is shared and its speed
    drifts, so the best batch is the steadier estimate of what the code costs; the median shows
    what a busy host gives."""
    times = {name: [] for name in fns}
    for _ in range(batches):
        for name, fn in fns.items():
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            t1 = time.perf_counter()
            torch.cuda.synchronize()
            times[name].append((t1 - t0) / calls * 1e6)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--L", type=int, default=256)
    args = ap.parse_args()
    if not la.cuda_available() or "sm90" not in la.available_backends():
        raise SystemExit("needs an sm90 GPU and a CUDA build of lite_attention")
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, args.L, 2, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    with torch.no_grad():
        dense = la.LiteAttention(enable_skipping=False)
        skipping = la.LiteAttention(threshold=-6.0)
        for _ in range(10):  # warm-up: state allocation, op registration, first launch
            dense(q, k, v)
            skipping(q, k, v)
        # The same skipping call captured once and replayed: the host cost of a graph launch.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            skipping(q, k, v)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            skipping(q, k, v)
        # For scale: what a call of PyTorch's own fused attention (cuDNN) costs the host on the same
        # problem, on (B, H, L, D) views as it takes them.
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        from torch.nn.attention import SDPBackend, sdpa_kernel

        sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt)  # noqa: E731
        fns = {"eager_dense": lambda: dense(q, k, v), "eager_skipping": lambda: skipping(q, k, v),
               "graph_replay": graph.replay}
        try:
            with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                sdpa()
            backend = sdpa_kernel([SDPBackend.CUDNN_ATTENTION])  # held over all series: it only picks SDPA's backend
            cudnn = True
        except RuntimeError:  # no cuDNN attention in this torch build: torch's own choice
            backend, cudnn = contextlib.nullcontext(), False
        fns["sdpa_eager"] = sdpa
        result = {"shape": [1, args.L, 2, 128], "batches": "interleaved"}
        with backend:
            for name, (median, best) in per_call_us(fns, args.calls).items():
                result[f"{name}_us"], result[f"{name}_best_us"] = median, best
        result["sdpa_backend"] = "cudnn" if cudnn else "default"
    result["card"] = torch.cuda.get_device_name()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
