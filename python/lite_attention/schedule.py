"""Per-step thresholds (method.md section 5).

Early denoising steps shape the whole video, so they get stricter (more negative) thresholds;
warm-up steps run dense and leave the skip state untouched. The JSON format is shared with the
C++ ``liteattn::ThresholdSchedule``::

    {"warmup_steps": W, "thresholds": [t0, t1, ...]}

Steps past the end of the list reuse the last threshold. Thresholds are in log2 units and <= 0
(-inf keeps every tile). -inf is written as ``-1e999`` (standard JSON, read back as -inf by every
reader; ``-Infinity`` is read too), as the C++ side does.
"""
from __future__ import annotations

import json
import math
import os
from typing import Iterable, List, Sequence, Union

from ._checks import check_integer


MAX_WARMUP_STEPS = 2**31 - 1  # the C++ schedule's int


def check_threshold(t, name: str = "threshold") -> float:
    try:
        if isinstance(t, (str, bytes)):
            raise TypeError
        value = float(t)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number <= 0 in log2 units (e.g. -10), got {t!r}") from None
    if math.isnan(value) or value > 0.0:
        raise ValueError(
            f"{name}: expected a number <= 0 in log2 units (e.g. -10: a skipped tile's weights are at most "
            f"2^-10 of the row max), got {t!r}"
        )
    return value


class ThresholdSchedule:
    """Maps a denoising step to a threshold; the first ``warmup_steps`` steps run dense."""

    __slots__ = ("_thresholds", "_warmup")

    def __init__(self, thresholds: Union[float, Sequence[float]] = -10.0, warmup_steps: int = 0):
        if isinstance(thresholds, (str, bytes)):
            raise TypeError(f"thresholds: expected a number or a sequence of numbers <= 0, got {thresholds!r}")
        try:
            items = list(thresholds)
        except TypeError:  # one number (a Python, NumPy or 0-dim torch scalar)
            items = [thresholds]
        values = [check_threshold(t, "thresholds") for t in items]
        if not values:
            raise ValueError("thresholds: expected at least one threshold")
        self._thresholds: List[float] = values
        self._warmup = check_integer(warmup_steps, "warmup_steps", 0, MAX_WARMUP_STEPS, "an integer >= 0")

    @classmethod
    def constant(cls, threshold: float, warmup_steps: int = 0) -> "ThresholdSchedule":
        return cls([threshold], warmup_steps)

    @classmethod
    def per_step(cls, thresholds: Iterable[float], warmup_steps: int = 0) -> "ThresholdSchedule":
        return cls(list(thresholds), warmup_steps)

    @property
    def thresholds(self) -> List[float]:
        return list(self._thresholds)

    @property
    def warmup_steps(self) -> int:
        return self._warmup

    @property
    def is_constant(self) -> bool:
        return len(self._thresholds) == 1 and self._warmup == 0

    def threshold(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step: expected >= 0, got {step}")
        return self._thresholds[min(step, len(self._thresholds) - 1)]

    def is_warmup(self, step: int) -> bool:
        return step < self._warmup

    def __call__(self, step: int):
        """(skipping enabled, threshold) for a step."""
        return (not self.is_warmup(step), self.threshold(step))

    # --- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"warmup_steps": self._warmup, "thresholds": list(self._thresholds)}

    def to_json(self) -> str:
        # Standard JSON: -inf as -1e999 (json.dumps would write the non-standard -Infinity).
        numbers = ", ".join("-1e999" if t == -math.inf else json.dumps(t) for t in self._thresholds)
        return f'{{"warmup_steps": {self._warmup}, "thresholds": [{numbers}]}}'

    @classmethod
    def from_dict(cls, d: dict) -> "ThresholdSchedule":
        """The JSON object's fields, with the C++ reader's rules: thresholds a list of numbers,
        warmup_steps an integer (2.0 reads as 2)."""
        if not isinstance(d, dict) or "thresholds" not in d:
            raise ValueError('schedule: expected {"warmup_steps": W, "thresholds": [...]}')
        thresholds = d["thresholds"]
        if not isinstance(thresholds, list) or not all(
                isinstance(t, (int, float)) and not isinstance(t, bool) for t in thresholds):
            raise TypeError(f"thresholds: expected a list of numbers <= 0, got {thresholds!r}")
        warmup = d.get("warmup_steps", 0)
        if isinstance(warmup, float) and warmup.is_integer():
            warmup = int(warmup)
        return cls(thresholds, warmup)

    @classmethod
    def from_json(cls, text: str) -> "ThresholdSchedule":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"schedule: invalid JSON: {e}") from None
        return cls.from_dict(d)

    def save(self, path: Union[str, os.PathLike]) -> None:
        with open(path, "w") as f:
            f.write(self.to_json() + "\n")

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "ThresholdSchedule":
        with open(path) as f:
            return cls.from_json(f.read())

    def __eq__(self, other):
        return isinstance(other, ThresholdSchedule) and self.to_dict() == other.to_dict()

    def __repr__(self):
        if len(self._thresholds) == 1:
            body = f"{self._thresholds[0]!r}"
        else:
            body = f"[{', '.join(f'{t:g}' for t in self._thresholds)}]"
        return f"ThresholdSchedule({body}, warmup_steps={self._warmup})"
