"""The Zipf generator: deterministic, in range, and with the popularity law it claims (s = 1.1)."""

from __future__ import annotations

from collections import Counter

import pytest

from meshauth.bench import zipf


def test_deterministic_and_in_range() -> None:
    a = zipf.sample(1000, 5000, seed=4)
    assert a == zipf.sample(1000, 5000, seed=4)
    assert a != zipf.sample(1000, 5000, seed=5)
    assert min(a) >= 0 and max(a) < 1000


def test_frequencies_follow_the_power_law() -> None:
    counts = Counter(zipf.sample(10_000, 200_000, seed=1))
    # P(rank 0) / P(rank k) = (k+1)^s; with 200,000 draws the ratios land within a few per cent.
    for k in (1, 3, 9):
        assert counts[0] / counts[k] == pytest.approx((k + 1) ** zipf.ZIPF_S, rel=0.08)
    # the expected share of the top 100 of 10,000 ranks: H(100, 1.1) / H(10,000, 1.1)
    weights = zipf.cumulative_weights(10_000)
    expected = weights[99] / weights[-1]
    assert zipf.top_share(list(counts.elements()), 100) == pytest.approx(expected, abs=0.01)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        zipf.sample(0, 10)
    with pytest.raises(ValueError, match="positive"):
        zipf.cumulative_weights(10, 0)
    assert zipf.top_share([], 10) == 0.0
