#!/usr/bin/env python3
"""SM clock and power per A/B variant, from the files scripts/sm90_device_session.sh writes.

The card runs at its power limit in sustained attention calls, so a variant can win by drawing
less power (and so holding a higher clock) as well as by doing less work per clock. This pairs
each variant's run windows (ab_windows.txt: round, name, start, end in epoch seconds) with the
nvidia-smi samples taken meanwhile (smi.csv: timestamp, clocks.sm, power.draw, temperature) and
prints the median clock and power per variant.

Usage: ab_clock_summary.py OUT_DIR
"""
import datetime
import statistics
import sys
from pathlib import Path


def read_samples(path):
    samples = []
    for line in path.read_text().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3:
            continue
        try:
            # nvidia-smi prints the machine's local time, as naive timestamps read here on that machine.
            stamp = datetime.datetime.strptime(fields[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            clock = float(fields[1].split()[0])
            power = float(fields[2].split()[0])
        except ValueError:
            continue  # a header or a "[N/A]" sample
        samples.append((stamp, clock, power))
    return samples


def main(out_dir):
    out = Path(out_dir)
    for name in ("smi.csv", "ab_windows.txt"):
        if not (out / name).is_file():
            sys.exit(f"{out / name} is missing: run scripts/sm90_device_session.sh with AB_VARIANTS first")
    samples = read_samples(out / "smi.csv")
    per_variant = {}
    for line in (out / "ab_windows.txt").read_text().splitlines():
        _, name, start, end = line.split()
        inside = [(c, p) for t, c, p in samples if float(start) <= t <= float(end)]
        per_variant.setdefault(name, []).extend(inside)
    for name, values in per_variant.items():
        if not values:
            print(f"{name}: no samples")
            continue
        clocks = [c for c, _ in values]
        powers = [p for _, p in values]
        print(f"{name}: {len(values)} samples, SM clock median {statistics.median(clocks):.0f} MHz, "
              f"power median {statistics.median(powers):.0f} W")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
