"""Store names recently found missing: the decision API is unauthenticated, so a flood of unknown
store names must not cost a database transaction each."""

from __future__ import annotations

import time
from collections import OrderedDict

MISSING_TTL = 1.0  # seconds a store found missing is answered 404 without asking the database
MISSING_MAX = 10_000  # names remembered as missing


class MissingStores:
    def __init__(self, *, ttl: float = MISSING_TTL, max_names: int = MISSING_MAX) -> None:
        self._ttl = ttl
        self._max = max_names
        self._found: OrderedDict[str, float] = OrderedDict()  # name → monotonic time it was found missing

    def recently(self, name: str) -> bool:
        """Whether ``name`` was found missing less than the TTL ago."""
        found = self._found
        horizon = time.monotonic() - self._ttl
        while found and next(iter(found.values())) < horizon:
            found.popitem(last=False)
        return name in found

    def add(self, name: str) -> None:
        self._found[name] = time.monotonic()
        if len(self._found) > self._max:
            self._found.popitem(last=False)

    def discard(self, name: str) -> None:
        self._found.pop(name, None)

    def clear(self) -> None:
        """A write may have created any store."""
        self._found.clear()
