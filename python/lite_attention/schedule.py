"""Per-step thresholds (method.md section 5).

Early denoising steps shape the whole video, so they get stricter (more negative) thresholds;
warm-up steps run dense and leave the skip state untouched. The JSON format is shared with the
C++ ``liteattn::ThresholdSchedule``::

    {"warmup_steps": W, "thresholds": [t0, t1, ...]}

Steps past the end of the list reuse the last threshold. Thresholds are in log2 units and <= 0
(-inf keeps every tile). ``-Infinity`` is written for -inf, as the C++ side does.
"""
from __future__ import annotations

import json
import math
import os
from typing import Iterable, List, Sequence, Union


def check_threshold(t, name: str = "threshold") -> float:
    try:
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
        if isinstance(thresholds, (int, float)):
            thresholds = [thresholds]
        values = [check_threshold(t, "thresholds") for t in thresholds]
        if not values:
            raise ValueError("thresholds: expected at least one threshold")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps: expected an integer >= 0, got {warmup_steps!r}")
        self._thresholds: List[float] = values
        self._warmup = warmup_steps

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
        # json writes -inf as -Infinity, which is what the C++ reader accepts.
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "ThresholdSchedule":
        if not isinstance(d, dict) or "thresholds" not in d:
            raise ValueError('schedule: expected {"warmup_steps": W, "thresholds": [...]}')
        return cls(list(d["thresholds"]), int(d.get("warmup_steps", 0)))

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
