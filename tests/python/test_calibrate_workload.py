"""Calibration against dense on a trajectory, and the synthetic workload generator."""
import numpy as np
import pytest

import lite_attention as la


def small_workload(steps=8, seed=0):
    return la.VideoWorkload(frames=3, height=8, width=10, heads=2, head_dim=32, steps=steps, seed=seed)


def test_workload_is_deterministic_and_shaped():
    w = small_workload()
    q, k, v = w.generate(3)
    assert q.shape == (1, 240, 2, 32) and q.dtype == np.float32
    q2, k2, v2 = small_workload().generate(3)
    np.testing.assert_array_equal(q, q2)
    assert not np.array_equal(q, small_workload(seed=1).generate(3)[0])
    assert w.sigma(0) == pytest.approx(1.0) and w.sigma(7) < w.sigma(1)
    assert w.locality(0) > w.locality(1)
    assert la.VideoWorkload().shape == (1, 960, 4, 128)
    assert la.VideoWorkload("wan14b-480p").shape == (1, 32760, 40, 128)
    with pytest.raises(ValueError, match="preset"):
        la.VideoWorkload("sd3")
    with pytest.raises(ValueError, match="step"):
        w.generate(8)


def test_calibrate_meets_budget_tighter_early_and_reloads(tmp_path):
    w = small_workload(steps=8)
    result = la.calibrate(w, budget=0.02, cpu_tile=(16, 16), warmup_steps=1)
    sched = result.schedule
    assert sched.warmup_steps == 1 and len(sched.thresholds) == 8
    assert len(result.errors) == len(result.budgets) == len(result.sparsity) == 8
    assert result.budgets[0] == pytest.approx(0.005) and result.budgets[-1] == pytest.approx(0.02)
    assert result.within_budget, result
    assert max(result.sparsity) > 0.05  # it found something to skip
    path = tmp_path / "schedule.json"
    result.save(path)
    loaded = la.ThresholdSchedule.load(path)
    assert loaded == sched
    # Applying the schedule reproduces the calibrated trajectory.
    attn = la.LiteAttention(schedule=loaded, cpu_tile=(16, 16))
    for s in range(w.steps):
        q, k, v = w.generate(s)
        out = attn(q, k, v)
        dense = la.attention(q, k, v, cpu_tile=(16, 16))
        assert la.relative_l1(out, dense) == pytest.approx(result.errors[s], rel=1e-6, abs=1e-9)


def test_calibrate_accepts_callables_and_lists():
    w = small_workload(steps=4)
    traj = [w.generate(s) for s in range(4)]
    a = la.calibrate(traj, budget=0.05, cpu_tile=(16, 16), candidates=[-2, -6, -20])
    b = la.calibrate(lambda s: traj[s], steps=4, budget=0.05, cpu_tile=(16, 16), candidates=[-2, -6, -20])
    assert a.schedule == b.schedule
    assert set(a.schedule.thresholds) <= {-2.0, -6.0, -20.0}
    tight = la.calibrate(traj, budget=[1e-12] * 4, cpu_tile=(16, 16), candidates=[-2, -6, -20])
    assert tight.schedule.thresholds[:3] == [-20.0] * 3  # nothing fits: the strictest candidate
    with pytest.raises(TypeError, match="steps"):
        la.calibrate(lambda s: traj[s])
    with pytest.raises(ValueError, match="candidates"):
        la.calibrate(traj, candidates=[1.0])
    # More steps than the trajectory has: an error naming steps, before any step runs.
    with pytest.raises(ValueError, match="^steps: the workload has 4 steps"):
        la.calibrate(w, steps=5)
    with pytest.raises(ValueError, match="^steps: the trajectory has 4 steps"):
        la.calibrate(traj, steps=5)


@pytest.mark.parametrize("args,kwargs,exc,pattern", [
    (([],), {}, ValueError, r"^trajectory: expected at least one step"),
    ((None,), dict(steps=-1), ValueError, r"^steps: expected an integer >= 1"),
    ((None,), dict(steps=1.5), ValueError, r"^steps: expected an integer >= 1"),
    ((None,), dict(scale="a"), TypeError, r"^scale: "),
    ((None,), dict(cpu_threads="x"), TypeError, r"^cpu_threads: "),
    ((None,), dict(cpu_tile=(0, 4)), ValueError, r"^cpu_tile: "),
    ((None,), dict(budget="a"), TypeError, r"^budget: "),
    ((None,), dict(budget=float("nan")), ValueError, r"^budget: "),
    ((None,), dict(early_budget=float("nan")), ValueError, r"^early_budget: "),
    ((None,), dict(budget=[0.01, -1.0, 0.01, 0.01]), ValueError, r"^budget\[1\]: "),
])
def test_calibrate_argument_errors(args, kwargs, exc, pattern):
    w = small_workload(steps=4)
    trajectory = [w.generate(s) for s in range(4)] if args[0] is None else args[0]
    with pytest.raises(exc, match=pattern):
        la.calibrate(trajectory, cpu_tile=kwargs.pop("cpu_tile", (16, 16)), **kwargs)


def test_relative_l1():
    a = np.ones((1, 4, 1, 2), np.float32)
    assert la.relative_l1(a * 1.1, a) == pytest.approx(0.1, rel=1e-5)


def test_calibrate_on_bfloat16_torch_tensors():
    """bf16 torch tensors calibrate like the same values in float32 (NumPy has no bfloat16:
    outputs are widened exactly before the error is measured)."""
    torch = pytest.importorskip("torch")
    w = small_workload(steps=3)
    traj = [tuple(torch.from_numpy(x).bfloat16() for x in w.generate(s)) for s in range(3)]
    result = la.calibrate(traj, budget=0.05, cpu_tile=(16, 16), candidates=[-2, -6, -20])
    assert len(result.schedule.thresholds) == 3
    assert set(result.schedule.thresholds) <= {-2.0, -6.0, -20.0}
    assert la.relative_l1(traj[0][0], traj[0][0].float()) == 0.0
