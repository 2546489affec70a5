#!/usr/bin/env python3
"""Sparsity-error frontiers from `liteattn evaluate --out FILE.json` (issue 6).

Draws one curve per (criterion, order) over the threshold sweep:
  left:  final-step sparsity against final-step output error (relative L2 vs dense),
  right: mean sparsity over the trajectory against the error of the Euler latent
         (relative L2 of x_T - x_0, sparse vs dense), where early errors accumulate.
and prints (or writes with --md) a table of the sparsity each configuration reaches at equal
error, interpolated along its frontier, with the ratio to the paper's configuration
(running, alternate).

    python3 bench/plot_frontier.py RESULT.json --png docs/frontier.png --md docs/frontier_table.md

Results are on the synthetic video workload, not on a real model.
"""
import argparse
import json
import math
import sys

PAPER = ("running", "alternate")


def frontier(points):
    """Upper frontier of (error, sparsity) points: sorted by error, sparsity non-decreasing
    (a point with more error and no more sparsity than another is dominated)."""
    pts = sorted((e, s) for e, s in points if e > 0 and math.isfinite(e))
    out = []
    for e, s in pts:
        if out and s <= out[-1][1]:
            continue
        out.append((e, s))
    return out


def sparsity_at(front, target):
    """Sparsity on the frontier at error `target`, linear in log(error) between points.
    None below the frontier's smallest error; the largest sparsity (a lower bound) above."""
    if not front or target < front[0][0]:
        return None, ""
    for (e0, s0), (e1, s1) in zip(front, front[1:]):
        if e0 <= target <= e1:
            w = (math.log(target) - math.log(e0)) / (math.log(e1) - math.log(e0))
            return s0 + w * (s1 - s0), ""
    return front[-1][1], ">="


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("result", nargs="+", help="JSON written by `liteattn evaluate --out` (several: configurations "
                    "are pooled; schedules are compared with the constant thresholds of the same criterion and order)")
    ap.add_argument("--png", default="docs/frontier.png")
    ap.add_argument("--md", help="write the equal-error table here (markdown)")
    ap.add_argument("--targets", default="0.001,0.003,0.01,0.03",
                    help="final output errors (rel L2) at which to compare sparsity")
    ap.add_argument("--latent-targets", default="0.0003,0.001,0.003,0.01",
                    help="latent displacement errors (rel L2) at which to compare mean sparsity")
    args = ap.parse_args()

    results = []
    for path in args.result:
        with open(path) as f:
            results.append(json.load(f))
    r = results[0]
    for other in results[1:]:
        if other["shape"] != r["shape"] or other["tile"] != r["tile"] or other["steps"] != r["steps"]:
            sys.exit(f"{args.result}: the results are for different shapes, tiles or step counts")
    configs = [c for res in results for c in res["configs"]]
    schedules = [c for c in configs if c.get("threshold") is None]
    groups = {}
    for c in configs:
        if c.get("threshold") is None:
            continue  # schedules are compared separately (docs/evaluation.md)
        if math.isinf(c["threshold"]):
            continue  # threshold -inf skips nothing: it measures the error floor of the visit order
        groups.setdefault((c["criterion"], c["order"]), []).append(c)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shape = r["shape"]
    title = (f"synthetic video workload (not a real model): {r['backend']}, "
             f"{shape['frames']}x{shape['height']}x{shape['width']} = {shape['tokens']} tokens, "
             f"{shape['heads']} heads, hd {shape['head_dim']}, tile {r['tile']['m']}x{r['tile']['n']}, "
             f"{r['steps']} steps")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    styles = {"running": "-", "previous": "--"}
    markers = {"descending": "o", "alternate": "s", "diagonal_first": "^"}
    for (crit, order), cs in sorted(groups.items()):
        cs = sorted(cs, key=lambda c: c["threshold"])
        label = f"{crit}, {order}" + (" (paper)" if (crit, order) == PAPER else "")
        axes[0].plot([c["final_rel_l2"] for c in cs], [100 * c["final_sparsity"] for c in cs],
                     styles.get(crit, "-"), marker=markers.get(order, "o"), label=label)
        axes[1].plot([c["latent_displacement_rel_l2"] for c in cs], [100 * c["mean_sparsity"] for c in cs],
                     styles.get(crit, "-"), marker=markers.get(order, "o"), label=label)
        if (crit, order) == PAPER:
            for c in cs:
                axes[0].annotate(f"{c['threshold']:g}", (c["final_rel_l2"], 100 * c["final_sparsity"]),
                                 textcoords="offset points", xytext=(4, -10), fontsize=7)
    axes[0].set_xlabel("final-step output error vs dense (relative L2)")
    axes[0].set_ylabel("final-step tile sparsity (%)")
    axes[1].set_xlabel("Euler latent error, |x_T - x_0| sparse vs dense (relative L2)")
    axes[1].set_ylabel("mean tile sparsity over the trajectory (%)")
    for ax in axes:
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title + "\nthresholds annotated on the paper configuration", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"wrote {args.png}", file=sys.stderr)

    def table(metric_err, metric_sp, targets, what):
        lines = [f"Sparsity ({what}) at equal error, interpolated along each configuration's threshold "
                 f"frontier (linear in log error); ratio to (running, alternate) in brackets; "
                 f"'>=' = the frontier ends below that error, '-' = no threshold reaches that low an error.", "",
                 "| criterion | order | " + " | ".join(f"err {t:g}" for t in targets) + " |",
                 "|---|---|" + "---:|" * len(targets)]
        fronts = {k: frontier([(c[metric_err], c[metric_sp]) for c in cs]) for k, cs in groups.items()}
        paper = fronts.get(PAPER)
        for key in sorted(fronts):
            cells = []
            for t in targets:
                s, mark = sparsity_at(fronts[key], t)
                if s is None:
                    cells.append("-")
                    continue
                cell = f"{mark}{100 * s:.1f}%"
                if paper is not None:
                    p, _ = sparsity_at(paper, t)
                    if p:
                        cell += f" ({s / p:.2f}x)"
                cells.append(cell)
            lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    targets = [float(t) for t in args.targets.split(",")]
    latent_targets = [float(t) for t in args.latent_targets.split(",")]
    text = ("### Final-step sparsity at equal final-step output error (rel L2)\n\n"
            + table("final_rel_l2", "final_sparsity", targets, "final step")
            + "\n### Mean sparsity at equal Euler-latent error (rel L2 of x_T - x_0)\n\n"
            + table("latent_displacement_rel_l2", "mean_sparsity", latent_targets, "mean over steps"))
    if schedules:
        text += ("\n### Calibrated schedules against constant thresholds (same criterion and order)\n\n"
                 "Each schedule's sparsity next to the constant-threshold frontier's at the schedule's own error "
                 "(interpolated as above); ratio schedule / constant in brackets.\n\n"
                 "| schedule | criterion, order | final rel L2 | final sparsity (constant) | mean sparsity "
                 "(constant at equal final error) | latent rel L2 | mean sparsity (constant at equal latent error) |\n"
                 "|---|---|---:|---:|---:|---:|---:|\n")
        for c in schedules:
            cs = groups.get((c["criterion"], c["order"]), [])
            def vs(err_key, sp_key, value):
                s0, mark = sparsity_at(frontier([(x[err_key], x[sp_key]) for x in cs]), c[err_key])
                if s0 is None:
                    return f"{100 * c[sp_key]:.1f}% (-)"
                return f"{100 * c[sp_key]:.1f}% ({mark}{100 * s0:.1f}%, {c[sp_key] / s0:.2f}x)"
            text += (f"| {c['schedule_file']} | {c['criterion']}, {c['order']} | {c['final_rel_l2']:.2e} | "
                     f"{vs('final_rel_l2', 'final_sparsity', None)} | {vs('final_rel_l2', 'mean_sparsity', None)} | "
                     f"{c['latent_displacement_rel_l2']:.2e} | {vs('latent_displacement_rel_l2', 'mean_sparsity', None)} |\n")
    print(text)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text)
        print(f"wrote {args.md}", file=sys.stderr)


if __name__ == "__main__":
    main()
