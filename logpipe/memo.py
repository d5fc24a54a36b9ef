"""``Memo``: a dict that computes missing values, for the derived attributes that repeat."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(dict[K, V], Generic[K, V]):
    """``memo[key]`` is ``compute(key)``, computed once; when ``max_size`` keys are held, the
    memo starts over (bounded memory, no bookkeeping on hits: a hit is a plain dict lookup)."""

    def __init__(self, compute: Callable[[K], V], max_size: int) -> None:
        super().__init__()
        self.compute = compute
        self.max_size = max_size

    def __missing__(self, key: K) -> V:
        if len(self) >= self.max_size:
            self.clear()
        value = self[key] = self.compute(key)
        return value
