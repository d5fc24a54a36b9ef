"""``Memo``: a dict that computes missing values, for the derived attributes that repeat; and
``Frozen``, the read-only dicts those values are when events share them."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, NoReturn, TypeVar

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


class Frozen(dict[str, Any]):
    """A memoized value shared between events: read like a dict, serialised like one, and
    refusing changes (one event's change would show in every event sharing it)."""

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("this dict is shared between events: change a copy (dict(value))")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[Callable[[Any], Any], tuple[dict[str, Any]]]:
        return frozen, (dict(self),)


def frozen(value: Any) -> Any:
    """``value`` with its dicts made ``Frozen`` and its lists tuples, all the way down."""
    if isinstance(value, dict):
        return Frozen((key, frozen(item)) for key, item in value.items())
    if isinstance(value, list):
        return tuple(frozen(item) for item in value)
    return value
