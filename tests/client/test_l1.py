"""L1 decision cache: freshness, stale window, bound, and the cost of a hit."""

from __future__ import annotations

import time
import timeit

from hypothesis import given, settings
from hypothesis import strategies as st

from meshauth.client import Decision
from meshauth.client._cache import DecisionL1
from meshauth.client._keys import L1Key, request_key
from meshauth.wire import Resource, Subject


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


D = Decision(decision=True, reasons=("p",), revision=1, source="l1")
K = (1, None, request_key("default", Subject("User", "a"), "view", Resource("Doc", "d"), None))


def test_hit_while_fresh_and_miss_after() -> None:
    """An entry answers until its fresh deadline, then not."""
    clock = Clock()
    l1 = DecisionL1(maxsize=10, clock=clock)
    l1.put(K, D, clock.now + 5)
    assert l1.get(K) is D
    clock.now += 5
    assert l1.get(K) is None


def test_stale_entry_only_for_fallback() -> None:
    """Within stale_for after expiry, get() misses but get_stale() still answers; after it, neither."""
    clock = Clock()
    l1 = DecisionL1(maxsize=10, stale_for=30, clock=clock)
    l1.put(K, D, clock.now + 5)
    clock.now += 10
    assert l1.get(K) is None and l1.get_stale(K) is D
    clock.now += 30
    assert l1.get_stale(K) is None


def test_size_is_bounded() -> None:
    """The cache never holds more than maxsize entries."""
    clock = Clock()
    l1 = DecisionL1(maxsize=100, clock=clock)
    for i in range(1000):
        l1.put((i, None, b""), D, clock.now + 60)
    assert len(l1) <= 100


def test_hit_costs_at_most_a_microsecond() -> None:
    """A hit takes ≤ 1 µs — or, on a machine too loaded for that, ≤ 3× the bare minimum of any TTL
    cache hit (a clock read and a dict lookup) measured in the same run, so load cannot flake it."""
    l1 = DecisionL1(maxsize=10)
    l1.put(K, D, time.time() + 60)
    bare = {K: (D, 0.0)}
    now = time.time
    n = 200_000
    best = min(timeit.repeat(lambda: l1.get(K), number=n, repeat=7)) / n
    floor = min(timeit.repeat(lambda: (now(), bare.get(K)), number=n, repeat=7)) / n
    assert best <= 1e-6 or best <= 3 * floor, f"{best * 1e6:.2f} µs per hit (clock + dict: {floor * 1e6:.2f} µs)"


def test_a_key_in_use_survives_eviction_unlike_older_unused_ones() -> None:
    """CLOCK: the oldest entry, once hit, gets a second chance; unused entries of its age go first."""
    clock = Clock()
    l1 = DecisionL1(maxsize=100, clock=clock)
    hot = (0, None, b"hot")
    l1.put(hot, D, clock.now + 60)
    for i in range(99):
        l1.put((i, None, b"cold"), D, clock.now + 60)
    for i in range(1000):
        assert l1.get(hot) is D  # asked all the time, as the head of a Zipf workload is
        l1.put((1000 + i, None, b"new"), D, clock.now + 60)
    assert l1.get(hot) is D
    assert l1.get((0, None, b"cold")) is None
    assert len(l1) <= 100


def test_expired_entries_are_dropped_before_live_ones() -> None:
    """When full, expired entries make room first: a live entry is not evicted while dead ones remain."""
    clock = Clock()
    l1 = DecisionL1(maxsize=10, clock=clock)
    live = (0, None, b"live")
    l1.put(live, D, clock.now + 60)
    for i in range(9):
        l1.put((i, None, b"short"), D, clock.now + 1)
    clock.now += 2
    l1.put((99, None, b"next"), D, clock.now + 60)
    assert l1.get(live) is D and len(l1) == 2


class _ReferenceClock:
    """The CLOCK eviction as first written (pop the oldest; a marked one goes to the newest end with
    its mark cleared; expired entries dropped first), to check the one-walk eviction against."""

    def __init__(self, maxsize: int) -> None:
        self.data: dict[int, float] = {}
        self.used: set[int] = set()
        self.maxsize, self.batch = maxsize, max(1, maxsize // 20)

    def get(self, key: int, now: float) -> bool:
        if key in self.data and self.data[key] > now:
            self.used.add(key)
            return True
        return False

    def put(self, key: int, until: float, now: float) -> None:
        if key not in self.data and len(self.data) >= self.maxsize:
            for k in [k for k, u in self.data.items() if u <= now]:
                del self.data[k]
                self.used.discard(k)
            need = len(self.data) - self.maxsize + self.batch
            while need > 0 and self.data:
                k = next(iter(self.data))
                u = self.data.pop(k)
                if k in self.used:
                    self.used.discard(k)
                    self.data[k] = u
                else:
                    need -= 1
        self.data[key] = until


@given(
    maxsize=st.integers(1, 30),
    ops=st.lists(
        st.tuples(st.booleans(), st.integers(0, 40), st.sampled_from((0, 0, 0, 1)), st.integers(1, 30)), max_size=400
    ),
)
@settings(max_examples=300, deadline=None)
def test_eviction_keeps_exactly_what_the_reference_clock_keeps(
    maxsize: int, ops: list[tuple[bool, int, int, int]]
) -> None:
    """Random gets, puts (TTLs of 1-30 ticks) and clock ticks: after every step the cache holds as many
    entries as the reference eviction and the same live ones (so, step after step, the same order and
    marks: a difference in either shows as another key evicted later)."""
    clock = Clock()
    start = clock.now
    l1 = DecisionL1(maxsize=maxsize, clock=clock)
    ref = _ReferenceClock(maxsize)
    for is_get, key, tick, ttl in ops:
        clock.now += tick
        k = (key, None, b"")
        if is_get:
            assert (l1.get(k) is not None) == ref.get(key, clock.now)
        else:
            l1.put(k, D, clock.now + ttl)
            ref.put(key, clock.now + ttl, clock.now)
        assert len(l1) == len(ref.data)
        live = {n for n in range(41) if l1.get_stale((n, None, b"")) is not None}  # get_stale marks nothing
        assert live == {n for n, until in ref.data.items() if until > clock.now}
    assert clock.now >= start


def test_kept_answers_add_nothing_to_the_collectors_walk() -> None:
    """A full L1 (10,000 answers) is not walked by full collections: neither an answer nor, once a
    collection has seen it, the entry holding it is tracked (``meshauth.collector``, stop 23)."""
    import gc

    l1 = DecisionL1(maxsize=16, clock=Clock())
    d = Decision(decision=False, reasons=("policy_denied",), errors=("e",), revision=3, entities_version=4)
    assert not gc.is_tracked(d)
    key: L1Key = (3, 4, b"k")
    l1.put(key, d, l1.clock() + 60.0)
    gc.collect()
    assert not gc.is_tracked(l1._data[key])
