"""Throttling of password and client-secret guessing, in Redis so every replica shares the counts.

The model (README: "Guessing throttle")
---------------------------------------
Only failures count. Each counter (a *bucket*) holds the failed attempts of one window; an attempt is
refused with 429 and ``Retry-After`` (the bucket's remaining window) once a bucket that applies to it is
full. The buckets:

* per account and address (``throttle_max_per_account`` per ``throttle_window``): guessing from any one
  address is slowed, including from an address the user has logged in from before. A success from that
  address clears it.
* per address (``throttle_max_per_address`` per ``throttle_window``): one address guessing across many
  accounts. A success does not clear it (a guesser holding one valid account could reset it at will).
* per user account, from every address together (``throttle_max_per_account_total`` per
  ``throttle_total_window``), which bounds distributed guessing — but it does not apply to the user's
  *known addresses*: those a correct password came from within ``throttle_known_address_ttl`` (the
  ``throttle_max_known_addresses`` most recent). So strangers guessing from elsewhere cannot lock the
  user out of where they usually log in; at worst, while such an attack runs, a login from a new place
  waits. This is OWASP's "device cookie" idea keyed on the address, which needs no client state: the
  lockout applies only to untrusted sources. Per window, an account gets at most
  ``total + known addresses × per_account`` wrong answers.

Clients are counted per (client id, address) and per address only: a client's addresses are pods that
come and go, so a per-client total would let strangers lock new pods out, and a client secret is
machine-made, not a human password.

Concurrency: an attempt must not learn whether a guess was right once a bucket is full, or parallel
guesses would slip past the limit; yet a correct secret sent by many workers at once must not be refused
because of its own concurrency. So an admitted attempt holds a *reservation* in every bucket while its
hash runs, and an attempt is admitted only while failures + reservations stay under each limit. One
that would pass the limit only because of reservations *waits* for them to end (up to
``throttle_max_wait``): if they were failures, the bucket is now full and it is refused; if they were
successes (a client's own workers), nothing was counted and it goes ahead. A reservation lapses after
``throttle_attempt_timeout`` in case its replica died mid-attempt.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network, ip_address

from meshauth.redis_client import Keys, RedisConn

# KEYS: known-addresses zset, then per bucket its failure counter and its reservations zset.
# ARGV: now (ms), reservation id, reservation deadline (ms), address ('' = no known-address exemption),
#       known-since (ms), then per bucket its limit (negative: the bucket does not apply to known addresses).
# Returns {0, ms to wait} refused / {1, 0} busy with reservations only / {2, 0} admitted.
_ADMIT = """
local now = tonumber(ARGV[1])
local known = false
if ARGV[4] ~= '' then
  local seen = redis.call('ZSCORE', KEYS[1], ARGV[4])
  known = seen ~= false and tonumber(seen) >= tonumber(ARGV[5])
end
local n = (#KEYS - 1) / 2
local refused, wait, busy = false, 0, false
for i = 1, n do
  local limit = tonumber(ARGV[5 + i])
  if limit < 0 then
    if known then limit = 0 else limit = -limit end
  end
  if limit > 0 then
    local failures = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
    if failures >= limit then
      refused = true
      local ttl = redis.call('PTTL', KEYS[2 * i])
      if ttl > wait then wait = ttl end
    else
      redis.call('ZREMRANGEBYSCORE', KEYS[2 * i + 1], '-inf', now)
      if failures + redis.call('ZCARD', KEYS[2 * i + 1]) >= limit then busy = true end
    end
  end
end
if refused then return {0, wait} end
if busy then return {1, 0} end
for i = 1, n do
  redis.call('ZADD', KEYS[2 * i + 1], ARGV[3], ARGV[2])
  redis.call('PEXPIREAT', KEYS[2 * i + 1], ARGV[3])
end
return {2, 0}
"""

# KEYS: known-addresses zset, then per bucket its failure counter and its reservations zset.
# ARGV: reservation id, outcome ('failed' | 'succeeded' | 'abandoned'), address ('' = do not remember it),
#       now (ms), known ttl (ms), max known addresses, then per bucket its window (s) and whether a
#       success clears it ('1' / '0').
_FINISH = """
local n = (#KEYS - 1) / 2
for i = 1, n do
  redis.call('ZREM', KEYS[2 * i + 1], ARGV[1])
  if ARGV[2] == 'failed' then
    redis.call('INCR', KEYS[2 * i])
    redis.call('EXPIRE', KEYS[2 * i], ARGV[5 + 2 * i], 'NX')
  elseif ARGV[2] == 'succeeded' and ARGV[6 + 2 * i] == '1' then
    redis.call('DEL', KEYS[2 * i])
  end
end
if ARGV[2] == 'succeeded' and ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[6]) + 1))
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return 0
"""

_REFUSED, _BUSY, _ADMITTED = 0, 1, 2
_FIRST_WAIT = 0.005
_LONGEST_WAIT = 0.1


def address_key(address: str) -> str:
    """The address as the throttle counts it: IPv6 by its /64, which one subscriber usually holds whole
    (counting single IPv6 addresses would give a guesser 2^64 fresh counters)."""
    try:
        ip = ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(IPv6Network((int(ip), 64), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class Throttled:
    retry_after: int


@dataclass(frozen=True, slots=True)
class _Bucket:
    failures: str
    reservations: str
    limit: int  # negative: not applied to the account's known addresses
    window: int
    cleared_by_success: bool


class Attempt:
    """An admitted attempt: ``async with attempt:`` around the check, setting ``attempt.correct``.

    On leaving the block the outcome is reported once: correct → :meth:`succeeded`, anything else →
    :meth:`failed`; an exception (the database failed, the client went away) → :meth:`abandoned`, as no
    answer about the guess was given."""

    def __init__(self, throttle: Throttle, buckets: tuple[_Bucket, ...], known: str, address: str) -> None:
        self._throttle = throttle
        self._buckets = buckets
        self._known = known
        self._address = address
        self.reservation = secrets.token_hex(8)
        self.correct = False

    async def __aenter__(self) -> Attempt:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            await self.abandoned()
        elif self.correct:
            await self.succeeded()
        else:
            await self.failed()

    async def failed(self) -> None:
        """A wrong password or secret: count it in every bucket."""
        await self._finish("failed")

    async def succeeded(self) -> None:
        """The right one: count nothing, clear this address's count, remember the address as known."""
        await self._finish("succeeded")

    async def abandoned(self) -> None:
        """No answer was given (an error on the way): give the reservation back, count nothing."""
        await self._finish("abandoned")

    async def _finish(self, outcome: str) -> None:
        t = self._throttle
        args: list[str | int] = [
            self.reservation,
            outcome,
            self._address,
            int(time.time() * 1000),
            t.known_ttl * 1000,
            t.max_known,
        ]
        for b in self._buckets:
            args += [b.window, "1" if b.cleared_by_success else "0"]
        await t.finish_script(keys=[self._known, *_keys(self._buckets)], args=args)


def _keys(buckets: tuple[_Bucket, ...]) -> list[str]:
    return [k for b in buckets for k in (b.failures, b.reservations)]


class Throttle:
    def __init__(
        self,
        redis: RedisConn,
        keys: Keys,
        *,
        window: int,
        per_account: int,
        per_address: int,
        total_window: int,
        per_account_total: int,
        known_ttl: int,
        max_known: int,
        attempt_timeout: float,
        max_wait: float,
    ) -> None:
        self._keys = keys
        self._window = window
        self._per_account = per_account
        self._per_address = per_address
        self._total_window = total_window
        self._per_account_total = per_account_total
        self.known_ttl = known_ttl
        self.max_known = max_known
        self._attempt_timeout = attempt_timeout
        self._max_wait = max_wait
        self._admit = redis.register_script(_ADMIT)
        self.finish_script = redis.register_script(_FINISH)

    def _bucket(self, kind: str, who: str, limit: int, window: int, cleared: bool) -> _Bucket:
        key = self._keys.throttle(kind, who)
        return _Bucket(key, f"{key}:reserved", limit, window, cleared)

    async def admit(self, kind: str, account: str, address: str) -> Attempt | Throttled:
        """Admit one attempt on ``account`` ("user" or "client") from ``address``, or refuse it.

        Waits while only other attempts still in flight stand between this one and a limit."""
        where = address_key(address)
        buckets = [
            # '|' cannot occur in an account name (accounts.NAME_PATTERN): the pair is unambiguous.
            self._bucket(kind, f"{account}|{where}", self._per_account, self._window, True),
            self._bucket("addr", where, self._per_address, self._window, False),
        ]
        remembered = ""
        if kind == "user":
            buckets.append(self._bucket("user-all", account, -self._per_account_total, self._total_window, False))
            remembered = where
        attempt = Attempt(self, tuple(buckets), self._keys.throttle(f"{kind}-known", account), remembered)
        keys = [self._keys.throttle(f"{kind}-known", account), *_keys(attempt._buckets)]
        deadline = time.monotonic() + self._max_wait
        pause = _FIRST_WAIT
        while True:
            now = time.time()
            status, wait_ms = await self._admit(
                keys=keys,
                args=[
                    int(now * 1000),
                    attempt.reservation,
                    int((now + self._attempt_timeout) * 1000),
                    remembered,
                    int((now - self.known_ttl) * 1000),
                    *(b.limit for b in buckets),
                ],
            )
            if status == _ADMITTED:
                return attempt
            if status == _REFUSED:
                return Throttled(retry_after=max(1, math.ceil(int(wait_ms) / 1000)))
            # Busy: attempts in flight would fill a bucket if they failed. Wait for their outcome.
            if time.monotonic() + pause > deadline:
                return Throttled(retry_after=1)
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LONGEST_WAIT)
