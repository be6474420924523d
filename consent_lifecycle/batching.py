"""`batched`: a list cut into consecutive batches, the one way the project splits work and IN-lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def batched(items: Sequence[T], size: int) -> list[list[T]]:
    """`items` in consecutive lists of at most `size` (the last may be shorter; none when `items` is empty)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]
