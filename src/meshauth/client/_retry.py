"""A retry budget (token bucket): every first attempt earns ``ratio`` of a retry, each retry spends
one, and no more than ``max_balance`` is saved (a new budget holds ``initial_balance``, no more
than that either). Over any stretch, retries ≤ ratio × calls + max_balance, so retries cannot
multiply load when the service is struggling (the classic retry storm);
a quiet client keeps a small reserve for the odd reset connection."""

from __future__ import annotations

from meshauth.client._config import RetryConfig

__all__ = ["RetryBudget"]


class RetryBudget:
    def __init__(self, config: RetryConfig | None = None) -> None:
        self._cfg = config or RetryConfig()
        self.balance = float(self._cfg.initial_balance)

    @property
    def max_attempts(self) -> int:
        return self._cfg.max_attempts

    def deposit(self) -> None:
        """One call was made: earn ``ratio`` of a retry."""
        self.balance = min(self._cfg.max_balance, self.balance + self._cfg.ratio)

    def withdraw(self) -> bool:
        """Spend one retry; False when the budget does not hold one."""
        if self.balance >= 1.0:
            self.balance -= 1.0
            return True
        return False
