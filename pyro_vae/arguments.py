"""Checks of a library call's arguments: each bad one is a ValueError that names it and says what it must be,
before it could fail deep inside torch or Pyro (a float count: "'float' object cannot be interpreted as an
integer"; a list of images: "'list' object has no attribute 'dim'")."""

from __future__ import annotations

import numbers
from typing import Any

from torch import Tensor


def require_count(name: str, value: Any, least: int = 1) -> int:
    """``value`` as an int: an integer (Python's or NumPy's; not a bool, not 5.0) of at least ``least``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        kind = "a positive integer" if least == 1 else f"an integer >= {least}"
        raise ValueError(f"`{name}` must be {kind}, got {value!r}")
    return int(value)


def require_counts(**counts: Any) -> None:
    """require_count of each argument named."""
    for name, value in counts.items():
        require_count(name, value)


def require_tensor(name: str, value: Any) -> Tensor:
    """``value``, a torch.Tensor (a list or a NumPy array is not: torch.as_tensor makes one)."""
    if not isinstance(value, Tensor):
        kind = type(value).__name__ if type(value).__module__ == "builtins" else \
            f"{type(value).__module__.split('.')[0]}.{type(value).__name__}"
        raise ValueError(f"`{name}` must be a torch.Tensor, got a {kind}: pass "
                         f"torch.as_tensor({name}, dtype=torch.float32)")
    return value
