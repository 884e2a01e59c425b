"""Reading /metrics from outside: parsing, bounds on what a target may send, rates and quantiles."""

from __future__ import annotations

import math

import pytest

from meshauth.observability.scrape import (
    MAX_SAMPLES,
    Samples,
    ScrapeError,
    buckets,
    parse,
    quantile,
    rate,
    window,
)

TEXT = """# HELP meshauth_x_seconds Latency.
# TYPE meshauth_x_seconds histogram
meshauth_x_seconds_bucket{endpoint="/a",le="0.001"} 50.0
meshauth_x_seconds_bucket{endpoint="/a",le="0.01"} 90.0
meshauth_x_seconds_bucket{endpoint="/a",le="+Inf"} 100.0
meshauth_x_seconds_count{endpoint="/a"} 100.0
meshauth_x_seconds_sum{endpoint="/a"} 0.5
# HELP meshauth_y_total Events.
# TYPE meshauth_y_total counter
meshauth_y_total{kind="a"} 3.0
meshauth_y_total{kind="b"} 4.0
"""


def test_samples_keep_their_names_and_labels() -> None:
    """Counter samples keep ``_total`` (the parser strips it from family names only)."""
    s = parse(TEXT)
    assert s.total("meshauth_y_total") == 7
    assert s.total("meshauth_y_total", kind="a") == 3
    assert s.grouped("meshauth_y_total", "kind") == {"a": 3.0, "b": 4.0}
    assert buckets(s, "meshauth_x_seconds") == {0.001: 50.0, 0.01: 90.0, math.inf: 100.0}


def test_quantiles_interpolate_within_buckets() -> None:
    cumulative = {0.001: 50.0, 0.01: 90.0, math.inf: 100.0}
    assert quantile(0.5, cumulative) == pytest.approx(0.001)
    assert quantile(0.7, cumulative) == pytest.approx(0.001 + 0.009 * 0.5)
    assert quantile(0.99, cumulative) == 0.01  # in +Inf: the largest finite bound
    assert quantile(0.5, {0.001: 0.0, math.inf: 0.0}) is None
    assert quantile(0.5, {}) is None
    assert quantile(0.5, {0.001: 3.0}) is None  # no +Inf bucket: not a histogram


def test_rates_and_windows_between_two_scrapes() -> None:
    before = Samples({"c_total": {frozenset(): 10.0}}, at=100.0)
    now = Samples({"c_total": {frozenset(): 30.0}}, at=102.0)
    assert rate(now, before, "c_total") == 10.0
    assert rate(now, None, "c_total") is None
    restarted = Samples({"c_total": {frozenset(): 4.0}}, at=104.0)
    assert rate(restarted, now, "c_total") == 2.0  # counted from zero after a restart
    assert window({1.0: 5.0, math.inf: 9.0}, {1.0: 2.0, math.inf: 3.0}) == {1.0: 3.0, math.inf: 6.0}
    assert window({1.0: 1.0, math.inf: 1.0}, {1.0: 2.0, math.inf: 3.0}) == {1.0: 1.0, math.inf: 1.0}


@pytest.mark.parametrize(
    "text",
    [
        "\x00\xff{{{ not metrics",
        'meshauth_x{le="0.1" 1',
        '# TYPE meshauth_x histogram\nmeshauth_x_bucket{le="abc"} nan\n' + "x" * 10_000,
        "{" * 100_000,
    ],
)
def test_garbage_is_a_scrape_error(text: str) -> None:
    """Malformed text never escapes as anything but ScrapeError, with a short reason."""
    with pytest.raises(ScrapeError, match="not Prometheus text"):
        parse(text)


def test_extra_fields_after_a_value_are_tolerated_as_the_parser_does() -> None:
    """The parser reads ``name value timestamp…`` leniently: one plain sample, nothing more."""
    s = parse("meshauth_x 1 2 3 4")
    assert s.total("meshauth_x") == 1.0
    assert quantile(0.5, buckets(s, "meshauth_x")) is None


def test_too_many_samples_are_refused() -> None:
    text = "".join(f'm{{i="{i}"}} 1\n' for i in range(MAX_SAMPLES + 1))
    with pytest.raises(ScrapeError, match="samples"):
        parse(text)
