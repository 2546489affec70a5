"""Contract checks of the `liteattn` program through its exit codes and JSON (run by ctest).

usage: check_cli.py PATH_TO_LITEATTN
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def run(cli, *args):
    return subprocess.run([cli, *args], capture_output=True, text=True)


def check_demo_json(cli, tmp):
    # An odd shape (3 x 7 x 11 = 231 tokens, 3 heads, head dim 48) with 16 x 16 tiles: partial
    # tiles on both axes.
    out = tmp / "demo.json"
    r = run(cli, "demo", "--backend", "cpu", "--frames", "3", "--height", "7", "--width", "11", "--heads", "3",
            "--head-dim", "48", "--tile", "16", "--steps", "8", "--threshold", "-4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["backend"] == "cpu" and d["shape"]["tokens"] == 231 and d["shape"]["heads"] == 3
    assert d["tile"] == {"m": 16, "n": 16}
    steps = d["steps"]
    assert [s["step"] for s in steps] == list(range(8))
    sparsity = [s["sparsity"] for s in steps]
    assert sparsity[0] == 0.0, "the first call reads the initial all-ones mask"
    assert all(b >= a for a, b in zip(sparsity, sparsity[1:])), f"skips only accumulate: {sparsity}"
    assert sparsity[-1] > 0.0, f"the workload must give some sparsity at threshold -4: {sparsity}"
    for s in steps:
        assert 0.0 <= s["sparsity"] <= 1.0 and s["rel_l2"] >= 0.0 and s["rel_l2"] < 0.1, s
        assert len(s["head_sparsity"]) == 3
        # Every head has the same number of tiles, so the overall sparsity is the heads' mean.
        assert abs(sum(s["head_sparsity"]) / 3 - s["sparsity"]) < 1e-5, s
    assert steps[0]["rel_l2"] == 0.0, "nothing skipped and the same tiles as dense: identical outputs"


def check_demo_disabled_skipping_is_dense(cli, tmp):
    out = tmp / "dense.json"
    r = run(cli, "demo", "--backend", "cpu", "--frames", "2", "--height", "5", "--width", "9", "--heads", "2",
            "--head-dim", "32", "--steps", "4", "--warmup", "4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    for s in json.loads(out.read_text())["steps"]:
        assert s["warmup"] and s["sparsity"] == 0.0 and s["rel_l2"] == 0.0, s


def check_json_is_standard(cli, tmp):
    # -inf thresholds (keep every tile) must still give standard JSON: no -Infinity token.
    out = tmp / "inf.json"
    r = run(cli, "demo", "--backend", "cpu", "--frames", "2", "--height", "4", "--width", "4", "--heads", "2",
            "--head-dim", "32", "--steps", "2", "--threshold=-inf", "--out", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()

    def reject(token):
        raise AssertionError(f"non-standard JSON token {token} in {out.name}")

    d = json.loads(text, parse_constant=reject)
    assert d["schedule"]["thresholds"] == [float("-inf")], d["schedule"]


def check_bad_arguments(cli, tmp):
    schedule = tmp / "schedule.json"
    schedule.write_text('{"warmup_steps": 0, "thresholds": [-4]}')
    cases = [
        (["demo", "--schedule", str(schedule), "--warmup", "2"], "--warmup"),
        (["demo", "--steps", "1", "--frames", "2", "--height", "4", "--width", "4", "--png", str(tmp / "no" / "m.png")],
         "--png"),
        (["demo", "--steps", "x"], "--steps"),
        (["demo", "--threshold", "2"], "--threshold"),
        (["demo", "--preset", "nope"], "--preset"),
        (["demo", "--order", "sideways"], "--order"),
        (["demo", "--head-dim", "8"], "--head-dim"),
        (["demo", "--bogus"], "--bogus"),
        (["verify", "--cases", "0"], "--cases"),
        (["bench", "--sparsity", "1.5"], "--sparsity"),
        (["frobnicate"], "frobnicate"),
    ]
    for args, name in cases:
        r = run(cli, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and name in lines[0], (args, r.stderr)


def check_help(cli):
    for args in (["--help"], ["demo", "--help"], ["evaluate", "-h"]):
        r = run(cli, *args)
        assert r.returncode == 0 and "usage: liteattn" in r.stdout and "evaluate" in r.stdout, (args, r.stderr)
    r = run(cli)
    assert r.returncode == 2 and "usage: liteattn" in r.stderr
    r = run(cli, "bogus", "--help")  # an unknown command stays an error, help or not
    assert r.returncode == 2 and "unknown command 'bogus'" in r.stderr, (r.returncode, r.stderr)


def main():
    cli = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        check_demo_json(cli, tmp)
        check_demo_disabled_skipping_is_dense(cli, tmp)
        check_json_is_standard(cli, tmp)
        check_bad_arguments(cli, tmp)
    check_help(cli)
    print("cli checks passed")


if __name__ == "__main__":
    main()
