"""Token range lists for must_do / must_skip / dense queries.

Accepted spellings (all half-open [start, end), ascending, not overlapping; touching is fine):
  * None or [] : no range
  * pairs      : [(start, end), ...]   e.g. [(2, 12), (40, 45)]
  * flat list  : [start0, end0, start1, end1, ...]   (the upstream LiteAttention spelling)
  * an integer array / tensor of shape (2N,) or (N, 2) with the same meaning
At most 16 ranges per list.
"""
from __future__ import annotations

import numbers
from typing import Any, List, Tuple

Ranges = List[Tuple[int, int]]

MAX_RANGES = 16  # per list, as the C++ core (kMaxRanges in src/core/plan.hpp)


def _as_int(x: Any, name: str) -> int:
    if isinstance(x, bool) or type(x).__name__ == "bool_":
        raise TypeError(f"{name}: expected integer token positions, got {x!r}")
    if not isinstance(x, numbers.Integral):
        try:
            import operator

            return operator.index(x)  # numpy / torch integer scalars
        except TypeError:
            raise TypeError(f"{name}: expected integer token positions, got {x!r}") from None
    return int(x)


def normalize_ranges(value: Any, length: int, name: str, length_name: str = "L") -> Ranges:
    """Returns [(start, end), ...] checked against 0 <= start < end <= length, ascending."""
    if value is None:
        return []
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()  # numpy / torch / cupy arrays
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{name}: expected ranges as [(start, end), ...] or a flat list [start0, end0, start1, end1, ...], "
            f"got {type(value).__name__}"
        )
    if len(value) == 0:
        return []
    if all(isinstance(r, (list, tuple)) for r in value):
        pairs = []
        for i, r in enumerate(value):
            if len(r) != 2:
                raise ValueError(f"{name}: range {i} must be a pair (start, end), got {tuple(r)!r}")
            pairs.append((_as_int(r[0], name), _as_int(r[1], name)))
    elif any(isinstance(r, (list, tuple)) for r in value):
        raise TypeError(f"{name}: mixes pairs and plain integers; use one spelling")
    else:
        flat = [_as_int(x, name) for x in value]
        if len(flat) % 2:
            raise ValueError(
                f"{name}: a flat range list needs an even number of entries [start0, end0, start1, end1, ...], "
                f"got {len(flat)}"
            )
        pairs = list(zip(flat[0::2], flat[1::2]))
    if len(pairs) > MAX_RANGES:
        raise ValueError(f"{name}: at most {MAX_RANGES} ranges are supported, got {len(pairs)}")
    previous_end = 0
    for i, (s, e) in enumerate(pairs):
        if not (0 <= s < e <= length):
            raise ValueError(
                f"{name}: range {i} [{s}, {e}) must satisfy 0 <= start < end <= {length_name} = {length}"
            )
        if i and s < previous_end:
            raise ValueError(
                f"{name}: range {i} [{s}, {e}) must be ascending and not overlap the previous range "
                f"(which ends at {previous_end})"
            )
        previous_end = e
    return pairs


def flatten(ranges: Ranges) -> List[int]:
    out: List[int] = []
    for s, e in ranges:
        out += [s, e]
    return out


def pairs(flat: List[int]) -> Ranges:
    return list(zip(flat[0::2], flat[1::2]))
