"""Reading a process's ``/metrics`` from outside (``meshauth top``): fetch, parse, and the arithmetic a
dashboard needs (sums over label sets, rates between two scrapes, quantiles from histogram buckets).

Whatever the target sends is untrusted: the body is read up to ``MAX_BYTES`` and parsed up to
``MAX_SAMPLES``, and every failure (refused, timed out, too big, not the text format) is a
``ScrapeError`` with a one-line reason, never an exception out of the dashboard.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

MAX_BYTES = 4 * 1024 * 1024
MAX_SAMPLES = 50_000
Labels = frozenset[tuple[str, str]]


class ScrapeError(Exception):
    """A target that could not be read; ``str()`` is a short reason for an error row."""


@dataclass(frozen=True)
class Samples:
    """One scrape: sample name → {label set → value}, and when it was taken (monotonic seconds)."""

    values: Mapping[str, Mapping[Labels, float]]
    at: float = field(default_factory=time.monotonic)

    def has(self, name: str) -> bool:
        return name in self.values

    def series(self, name: str, **labels: str) -> dict[Labels, float]:
        """The label sets of ``name`` that carry ``labels``, with their values."""
        wanted = labels.items()
        return {ls: v for ls, v in self.values.get(name, {}).items() if wanted <= dict(ls).items()}

    def total(self, name: str, **labels: str) -> float:
        return sum(self.series(name, **labels).values())

    def grouped(self, name: str, by: str, **labels: str) -> dict[str, float]:
        """Sums of ``name`` per value of the label ``by``."""
        out: dict[str, float] = {}
        for ls, v in self.series(name, **labels).items():
            key = dict(ls).get(by, "")
            out[key] = out.get(key, 0.0) + v
        return out


def parse(text: str) -> Samples:
    """The samples of a Prometheus text exposition; ScrapeError if it is not one (or too large)."""
    values: dict[str, dict[Labels, float]] = {}
    n = 0
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                n += 1
                if n > MAX_SAMPLES:
                    raise ScrapeError(f"more than {MAX_SAMPLES} samples")
                values.setdefault(s.name, {})[frozenset(s.labels.items())] = float(s.value)
    except ScrapeError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:  # the parser's, on malformed input
        raise ScrapeError(f"not Prometheus text: {type(exc).__name__}") from None
    return Samples(values)


def fetch(url: str, *, timeout: float = 1.0) -> Samples:
    """GET ``url`` (a ``/metrics`` address) and parse it; ScrapeError with a reason on any failure."""
    request = urllib.request.Request(url, headers={"accept": "text/plain"})  # noqa: S310 - operator's URL
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ScrapeError(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ScrapeError(str(reason) or type(exc).__name__) from None
    if len(body) > MAX_BYTES:
        raise ScrapeError(f"/metrics over {MAX_BYTES // (1024 * 1024)} MiB")
    return parse(body.decode("utf-8", errors="replace"))


def rate(now: Samples, before: Samples | None, name: str, **labels: str) -> float | None:
    """Per-second increase of a counter's summed samples, or None without an earlier scrape. A drop
    (a process restarted) counts from zero, as Prometheus's ``rate`` does."""
    if before is None or now.at <= before.at:
        return None
    current, previous = now.total(name, **labels), before.total(name, **labels)
    increase = current - previous if current >= previous else current
    return increase / (now.at - before.at)


def buckets(samples: Samples, name: str, **labels: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts summed over label sets: upper bound → count."""
    out: dict[float, float] = {}
    for ls, v in samples.series(name + "_bucket", **labels).items():
        le = dict(ls).get("le")
        if le is None:
            continue
        try:
            bound = float(le)
        except ValueError:
            continue
        out[bound] = out.get(bound, 0.0) + v
    return out


def without(total: Mapping[float, float], part: Mapping[float, float]) -> dict[float, float]:
    """Buckets of ``total`` less those of ``part`` (all requests but the scrapes)."""
    return {b: v - part.get(b, 0.0) for b, v in total.items()}


def window(now: Mapping[float, float], before: Mapping[float, float] | None) -> dict[float, float]:
    """Buckets of the observations made between two scrapes (all of ``now`` without an earlier one,
    or after a restart)."""
    if not before:
        return dict(now)
    delta = {b: v - before.get(b, 0.0) for b, v in now.items()}
    return dict(now) if any(v < 0 for v in delta.values()) else delta


def quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """``histogram_quantile``: the ``q`` quantile from cumulative buckets (linear within a bucket;
    the largest finite bound if it falls in +Inf); None without observations."""
    bounds = sorted(cumulative)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    count = cumulative[bounds[-1]]
    if count <= 0:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for bound in bounds:
        seen = cumulative[bound]
        if seen >= rank:
            if math.isinf(bound):
                return lower
            if seen == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (seen - below)
        lower, below = bound, seen
    return lower


def label_values(samples: Samples, names: Iterable[str], label: str) -> set[str]:
    """Every value the label ``label`` takes in the given metrics."""
    return {dict(ls)[label] for name in names for ls in samples.values.get(name, {}) if label in dict(ls)}
