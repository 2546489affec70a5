"""Error calibration (method.md section 5): per-step thresholds within an error budget that is
tighter for early denoising steps.

A threshold chosen at step s decides the mask that step s writes, and so what step s+1 skips
(a call's own output depends only on the mask it reads). calibrate() therefore walks the
trajectory from the first step and, at each step s, picks the loosest candidate threshold whose
output error at step s+1 (relative L1 of the output against dense attention on the same inputs)
stays within budget(s+1). The error grows with looser thresholds, so candidates are bisected.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from ._arrays import lib_of
from ._core import (BACKENDS, CRITERIA, ORDERS, CallOptions, SkipState, check_call, check_cpu_threads, check_cpu_tile,
                    check_option, check_scale, run)
from .schedule import ThresholdSchedule, check_threshold

DEFAULT_CANDIDATES = (0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -8.0, -10.0, -12.0, -15.0, -20.0, -30.0)


def relative_l1(out, reference) -> float:
    """sum |out - reference| / sum |reference|, in float64 on the host."""
    o = _host(out).astype(np.float64)
    r = _host(reference).astype(np.float64)
    denominator = np.abs(r).sum()
    return float(np.abs(o - r).sum() / denominator) if denominator > 0 else float(np.abs(o).sum() > 0)


def _host(x) -> np.ndarray:
    return lib_of(x, "output").to_numpy(x)


def default_budget(budget: float, early_budget: Optional[float], steps: int) -> Callable[[int], float]:
    """Linear from early_budget (step 0) to budget (last step); early_budget defaults to budget/4."""
    early = budget / 4 if early_budget is None else early_budget
    return lambda s: early + (budget - early) * (s / (steps - 1) if steps > 1 else 1.0)


@dataclass
class CalibrationResult:
    schedule: ThresholdSchedule
    budgets: List[float] = field(default_factory=list)  # per step
    errors: List[float] = field(default_factory=list)  # relative L1 per step, on the calibrated trajectory
    sparsity: List[float] = field(default_factory=list)  # tile sparsity per step (0 for dense steps)

    @property
    def within_budget(self) -> bool:
        return all(e <= b * (1 + 1e-6) for e, b in zip(self.errors, self.budgets))

    def save(self, path) -> None:
        self.schedule.save(path)

    def __repr__(self):
        return (f"CalibrationResult({self.schedule!r}, max_error={max(self.errors, default=0):.4g}, "
                f"mean_sparsity={np.mean(self.sparsity) if self.sparsity else 0:.3f})")


def calibrate(trajectory, steps: Optional[int] = None, *, budget: Union[float, Sequence[float], Callable] = 0.01,
              early_budget: Optional[float] = None, warmup_steps: int = 0,
              candidates: Sequence[float] = DEFAULT_CANDIDATES, criterion: str = "running",
              order: str = "alternate", scale: Optional[float] = None, cpu_tile=None, cpu_threads: int = 0,
              backend: str = "auto", verbose: bool = False) -> CalibrationResult:
    """Calibrates a ThresholdSchedule on one attention layer's trajectory.

    trajectory: a VideoWorkload, a callable step -> (q, k, v), or a sequence of (q, k, v).
    steps: number of denoising steps (default: the workload's or the sequence's length).
    budget: the relative-L1 error budget of the last step (float), with early steps tighter
        (linear from early_budget, default budget/4, at step 0); or a per-step sequence; or a
        callable step -> budget.
    warmup_steps: leading steps that run dense and leave the state alone.
    candidates: thresholds to choose from (log2 units, <= 0).
    criterion, order, scale, cpu_tile, cpu_threads, backend: as for LiteAttention (use the same
        values when applying the schedule).
    """
    check_option(criterion, CRITERIA, "criterion")
    check_option(order, ORDERS, "order")
    check_option(backend, BACKENDS, "backend")
    scale = check_scale(scale)
    tile = check_cpu_tile(cpu_tile)
    cpu_threads = check_cpu_threads(cpu_threads)
    get, steps = _trajectory(trajectory, steps)
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or not 0 <= warmup_steps <= steps:
        raise ValueError(f"warmup_steps: expected an integer in [0, {steps}], got {warmup_steps!r}")
    cands = sorted({check_threshold(c, "candidates") for c in candidates}, reverse=True)  # loosest first
    if not cands:
        raise ValueError("candidates: expected at least one threshold")
    budget_at = _budget(budget, early_budget, steps)

    def call(q, k, v, state, threshold, enabled=True):
        lib = lib_of(q, "q")
        checked = check_call(lib, q, k, v, criterion, tile, names=("q", "k", "v"))
        opts = CallOptions(scale=scale, criterion=criterion, order=order, cpu_tile=tile, cpu_threads=cpu_threads,
                           backend=backend)
        return run(lib, q, k, v, state, opts, enabled, threshold, False, checked)[0]

    state = SkipState()
    chosen: List[float] = []
    result = CalibrationResult(ThresholdSchedule.constant(cands[-1]))
    inputs = get(0)
    for s in range(steps):
        q, k, v = inputs
        dense = call(q, k, v, None, 0.0, enabled=False)
        if s < warmup_steps:
            out = dense
            chosen.append(cands[-1])
            result.sparsity.append(0.0)
        else:
            nxt = get(s + 1) if s + 1 < steps else None
            if nxt is None:
                t = chosen[-1] if s > warmup_steps else cands[-1]
                after = state.clone()
                out = call(q, k, v, after, t)
            else:
                dense_next = call(*nxt, None, 0.0, enabled=False)
                limit = budget_at(s + 1)
                cache = {}

                def trial(i):
                    if i not in cache:
                        after = state.clone()
                        o = call(q, k, v, after, cands[i])
                        probe = after.clone()
                        err = relative_l1(call(*nxt, probe, cands[i]), dense_next)
                        cache[i] = (err, after, o)
                    return cache[i]

                # Bisect for the loosest candidate within the limit (error falls as thresholds tighten).
                lo, hi = 0, len(cands) - 1
                if trial(hi)[0] > limit:
                    lo = hi  # even the strictest misses: take it
                while lo < hi:
                    mid = (lo + hi) // 2
                    if trial(mid)[0] <= limit:
                        hi = mid
                    else:
                        lo = mid + 1
                t = cands[lo]
                _, after, out = trial(lo)
            chosen.append(t)
            state = after
            result.sparsity.append(state.stats().sparsity)
        result.errors.append(relative_l1(out, dense))
        result.budgets.append(budget_at(s))
        if verbose:
            print(f"step {s}: threshold {chosen[-1]:g} error {result.errors[-1]:.4g} "
                  f"(budget {result.budgets[-1]:.4g}) sparsity {result.sparsity[-1]:.3f}")
        if s + 1 < steps:
            inputs = get(s + 1)
    # Warm-up steps run dense; their entries only pad the list so that index = step.
    thresholds = [chosen[warmup_steps] if warmup_steps < steps else cands[-1]] * warmup_steps + chosen[warmup_steps:]
    result.schedule = ThresholdSchedule.per_step(thresholds or [cands[-1]], warmup_steps)
    return result


def _trajectory(trajectory, steps):
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps: expected an integer >= 1 or None, got {steps!r}")
    if hasattr(trajectory, "generate") and hasattr(trajectory, "steps"):
        n = trajectory.steps if steps is None else steps
        if n > trajectory.steps:
            raise ValueError(f"steps: the workload has {trajectory.steps} steps (VideoWorkload(steps=...)), asked for {n}")
        return (lambda s: trajectory.generate(s)), n
    if callable(trajectory):
        if steps is None:
            raise TypeError("steps: expected the number of steps for a callable trajectory")
        return trajectory, steps
    if isinstance(trajectory, (list, tuple)):
        if not trajectory:
            raise ValueError("trajectory: expected at least one step's (q, k, v)")
        n = len(trajectory) if steps is None else steps
        if n > len(trajectory):
            raise ValueError(f"steps: the trajectory has {len(trajectory)} steps, asked for {n}")
        return (lambda s: trajectory[s]), n
    raise TypeError("trajectory: expected a VideoWorkload, a callable step -> (q, k, v) or a list of (q, k, v)")


def _error_bound(value, name: str) -> float:
    """A relative-L1 error budget: a finite number >= 0."""
    try:
        b = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a relative-L1 error (a number >= 0), got {value!r}") from None
    if not (math.isfinite(b) and b >= 0):
        raise ValueError(f"{name}: expected a relative-L1 error (a finite number >= 0), got {value!r}")
    return b


def _budget(budget, early_budget, steps):
    if callable(budget):
        return lambda s: _error_bound(budget(s), f"budget({s})")
    if isinstance(budget, (list, tuple)):
        if len(budget) < steps:
            raise ValueError(f"budget: expected {steps} per-step budgets, got {len(budget)}")
        per_step = [_error_bound(b, f"budget[{s}]") for s, b in enumerate(budget[:steps])]
        return lambda s: per_step[s]
    b = _error_bound(budget, "budget")
    if b == 0:
        raise ValueError(f"budget: expected a positive relative-L1 error, got {budget!r}")
    early = None if early_budget is None else _error_bound(early_budget, "early_budget")
    return default_budget(b, early, steps)
