"""RetryBudget: retries stay within ratio × calls (+ a small saved balance)."""

from __future__ import annotations

from meshauth.client import RetryBudget, RetryConfig


def test_no_retry_before_the_budget_has_earned_one() -> None:
    """A fresh budget holds nothing: the first failures are not retried."""
    b = RetryBudget(RetryConfig(ratio=0.1))
    assert not b.withdraw()


def test_retries_are_at_most_ratio_of_calls() -> None:
    """Over 1,000 calls that all want a retry, at most 10 % (+ the cap) are granted."""
    b = RetryBudget(RetryConfig(ratio=0.1, max_balance=10.0))
    granted = 0
    for _ in range(1000):
        b.deposit()
        granted += b.withdraw()
    assert 95 <= granted <= 100


def test_saved_balance_is_capped() -> None:
    """A long quiet stretch saves at most max_balance retries."""
    b = RetryBudget(RetryConfig(ratio=0.5, max_balance=3.0))
    for _ in range(100):
        b.deposit()
    assert [b.withdraw() for _ in range(5)] == [True, True, True, False, False]


def test_a_new_budget_starts_with_its_initial_balance() -> None:
    """initial_balance retries can be spent before any call has earned one, and no more."""
    b = RetryBudget(RetryConfig(ratio=0.1, max_balance=3.0, initial_balance=2.0))
    assert [b.withdraw() for _ in range(3)] == [True, True, False]
