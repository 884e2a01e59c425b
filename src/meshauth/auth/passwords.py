"""argon2id for user passwords and client secrets, off the event loop (hashing takes tens of ms by design).

Imported hashes (``phc``) keep their own parameters, up to m = 256 MiB, and anyone may try to log in
to such an account: six unauthenticated attempts at once (the default thread pool on two cores) held
~1.5 GiB and every hashing thread, and the guessing throttle limits attempts per account and address,
not across accounts. So a verification costlier than this service's own hashes (its ``m`` above
``memory_kib``) reserves its ``m`` from ``costly_budget_kib`` (``MESHAUTH_ARGON2_COSTLY_BUDGET_KIB``,
512 MiB: two at the cap, five of Django's 100 MiB) and is refused at once (``VerifyBusy``: 503
``temporarily_unavailable``) when the budget is spent, never queued. Verifications at the service's own
cost are not counted: the thread pool bounds them as before, and a login at the ordinary cost is never
refused because costly ones are running.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["DEFAULT_COSTLY_BUDGET_KIB", "Passwords", "VerifyBusy"]

DEFAULT_COSTLY_BUDGET_KIB = 512 * 1024


class VerifyBusy(Exception):
    """Costly verifications in flight already hold the budget: answer 503, do not wait."""


class Passwords:
    def __init__(
        self, *, time_cost: int, memory_kib: int, parallelism: int, costly_budget_kib: int = DEFAULT_COSTLY_BUDGET_KIB
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # Verified against when the account does not exist, so a miss costs what a hit costs.
        self._dummy = self._hasher.hash("meshauth-dummy-password")
        self._own_kib = memory_kib
        self.costly_budget_kib = costly_budget_kib
        self.costly_in_flight_kib = 0
        self._running: set[asyncio.Task[bool]] = set()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Constant-time comparison inside argon2; an absent account still pays for one verification.

        Raises VerifyBusy when ``stored_hash`` costs more memory than this service's own hashes and
        the costly budget cannot hold it now (module docstring)."""
        cost = self._memory_kib(stored_hash)
        if cost <= self._own_kib:
            return await asyncio.to_thread(self._verify, stored_hash, password)
        if self.costly_in_flight_kib + cost > self.costly_budget_kib:
            raise VerifyBusy  # the setting is at least phc's 256 MiB cap: alone, any importable hash runs
        self.costly_in_flight_kib += cost
        # Shielded: a caller that goes away (client disconnect) does not free the reservation while its
        # thread still holds the memory; the task releases it when the hashing has really ended.
        task = asyncio.create_task(self._costly(stored_hash, password, cost))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await asyncio.shield(task)

    async def _costly(self, stored_hash: str | None, password: str, cost: int) -> bool:
        try:
            return await asyncio.to_thread(self._verify, stored_hash, password)
        finally:
            self.costly_in_flight_kib -= cost

    def _memory_kib(self, stored_hash: str | None) -> int:
        if stored_hash is None:
            return self._own_kib
        try:
            return int(extract_parameters(stored_hash).memory_cost)
        except (InvalidHashError, ValueError):
            return self._own_kib  # fails verification at once, allocating nothing

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
