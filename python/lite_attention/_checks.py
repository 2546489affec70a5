"""Argument checks shared by the modules of the package (each error names the argument)."""
from __future__ import annotations

import operator


def check_integer(value, name: str, low: int, high: int, what: str) -> int:
    """value as an int in [low, high] (Python and NumPy integers; not bools), else a TypeError or
    ValueError that names the argument and says what was expected (`what`)."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected {what}, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected {what}, got {value!r}") from None
    if not low <= n <= high:
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return n
