"""Choosing a policy service URL: power of two choices on a latency-aware cost, with outlier ejection.

For deployments without a mesh (inside one there is a single address and Envoy balances). A call
goes to the cheaper of two URLs picked at random (without the herding of "always the cheapest"); a
retry avoids the URL that just failed. The cost (``BalanceConfig``) is **peak EWMA** × (outstanding
+ 1), as Finagle and linkerd: least outstanding alone sees a slow replica only through calls that
overlap, and with batching on they rarely do, so a slow replica kept its share (measured: p99 7 →
42 ms with one of three slow). The estimate takes a slower sample at once (peak) and decays toward
faster ones — and toward zero while the URL is not asked — with time constant ``decay``: a URL
never sampled costs nothing, so it is tried; a slow one is tried again once its estimate has
decayed below the others'. Without ``BalanceConfig``: outstanding calls only.

Ejection (as Envoy's outlier detection, ``EjectionConfig``): ``consecutive_failures`` failed calls
in a row take a URL out for ``base_time`` × 2^(earlier ejections) seconds, at most ``max_time``; it
comes back by itself when that time is over (the next failure streak ejects it again, for longer).
An endpoint that stays in for ``max_time`` after its return is forgiven (the doubling restarts).
At most ``max_percent`` of the URLs (rounded down) are out at once, and never all: when every URL
is failing, the breaker, not ejection, is what stops the calls. Time comes from an injectable clock.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence

from meshauth.client._config import BalanceConfig, EjectionConfig
from meshauth.client._metrics import EJECTIONS

__all__ = ["FAILED_CALL_SECONDS", "Endpoints"]

# What a failed call (transport error, timeout, 5xx/429, garbage) counts as in the latency estimate:
# as slow as a check's default deadline. Otherwise a URL refusing connections at once would look the
# fastest of all and draw the calls until ejected.
FAILED_CALL_SECONDS = 0.1

# The least latency estimate (1 µs, under any real call): with no samples yet, or equal ones, the
# outstanding calls still decide.
_FLOOR = 1e-6


class Endpoints:
    def __init__(
        self,
        urls: Sequence[str],
        config: EjectionConfig | None = EjectionConfig(),
        *,
        clock: Callable[[], float] = time.monotonic,
        balance: BalanceConfig | None = BalanceConfig(),
    ) -> None:
        self.urls = list(urls)
        self.outstanding = dict.fromkeys(self.urls, 0)
        self._decay = balance.decay if balance is not None else None
        self._rtt = dict.fromkeys(self.urls, 0.0)  # seconds, as of _rtt_at
        self._rtt_at = dict.fromkeys(self.urls, 0.0)
        self._cfg = config
        self._clock = clock
        self._failures = dict.fromkeys(self.urls, 0)  # consecutive
        self._ejections = dict.fromkeys(self.urls, 0)  # in a row, for the doubling
        self._returned_at = dict.fromkeys(self.urls, 0.0)
        self._out: dict[str, float] = {}  # ejected URL → when it comes back
        self._max_out = 0 if config is None else min(len(self.urls) - 1, int(len(self.urls) * config.max_percent))

    @property
    def ejected(self) -> list[str]:
        self._return_due()
        return sorted(self._out)

    def _return_due(self) -> None:
        if not self._out:
            return
        now = self._clock()
        for url, until in list(self._out.items()):
            if now >= until:
                del self._out[url]
                self._failures[url] = 0
                self._returned_at[url] = now

    def pick(self, avoid: str | None = None) -> str:
        """A URL for the next call; ``avoid`` (the one that just failed) only when it is the sole choice."""
        self._return_due()
        urls = self.urls if not self._out else [u for u in self.urls if u not in self._out]
        if len(urls) == 1:
            return urls[0]
        a, b = random.sample(urls, 2)
        if avoid is not None:
            if a == avoid:
                return b
            if b == avoid:
                return a
        if self._decay is None:
            return a if self.outstanding[a] <= self.outstanding[b] else b
        now = self._clock()
        return a if self.cost(a, now) <= self.cost(b, now) else b

    def _estimate(self, url: str, now: float) -> float:
        assert self._decay is not None
        return max(_FLOOR, self._rtt[url] * math.exp(-max(0.0, now - self._rtt_at[url]) / self._decay))

    def cost(self, url: str, now: float) -> float:
        """The latency estimate (decayed to ``now``) × (outstanding calls + 1)."""
        return self._estimate(url, now) * (self.outstanding[url] + 1)

    def observe(self, url: str, seconds: float) -> None:
        """A call to ``url`` took ``seconds`` (whatever its outcome: a timeout is slow too)."""
        if self._decay is None:
            return
        now = self._clock()
        elapsed = max(0.0, now - self._rtt_at[url])
        old = self._rtt[url]
        if seconds >= old:
            self._rtt[url] = seconds  # peak: a slower sample counts at once
        else:
            w = math.exp(-elapsed / self._decay)
            self._rtt[url] = old * w + seconds * (1 - w)
        self._rtt_at[url] = now

    def record(self, url: str, ok: bool) -> None:
        """The outcome of a call to ``url`` (``ok``: the service answered, even with a refusal)."""
        cfg = self._cfg
        if cfg is None or self._max_out == 0:
            return
        if ok:
            self._failures[url] = 0
            return
        self._failures[url] += 1
        if self._failures[url] < cfg.consecutive_failures or url in self._out:
            return
        self._return_due()
        if len(self._out) >= self._max_out:
            return  # enough are out already: this one stays in (its streak keeps counting)
        now = self._clock()
        if self._ejections[url] and now - self._returned_at[url] >= cfg.max_time:
            self._ejections[url] = 0  # healthy for long enough since it came back: forgiven
        self._out[url] = now + min(cfg.max_time, cfg.base_time * 2 ** self._ejections[url])
        self._ejections[url] += 1
        self._failures[url] = 0
        EJECTIONS.add(url)
