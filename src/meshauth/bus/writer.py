"""Writing the producer's records to Redis: every record of a batch in one script call.

A record is ``(partition stream key, encoded event)``; the partition was chosen from the event's key
when it left the buffer (``StreamNames.of_key``). Each stream's consumer groups are created before its
first write (and again after a Redis error, as Redis may have come back empty), so that no entry is
written before the groups that must read it exist.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from meshauth.bus.events import batch_size
from meshauth.bus.groups import ensure_groups
from meshauth.bus.metrics import PUBLISHED
from meshauth.bus.spool import Record
from meshauth.bus.streams import StreamNames
from meshauth.client._resp import RawRedis, raw_for
from meshauth.redis_client import connect

log = logging.getLogger(__name__)

PRODUCER_SOCKET_TIMEOUT = 1.0  # a stalled Redis turns into spooling after this long
PARTITION_MEMORY = 10_000  # keys whose partition a writer remembers

# One command per flush: the XADDs run inside Redis. A pipeline of XADDs cost the flushing process
# ~30 µs per event in redis-py's command packing and reply parsing, on the event loop the requests
# share (measured: gate p95 +65 % at 3,000 req/s); one EVALSHA with every payload as an argument
# costs a few µs per event. The command's bytes are built here and sent on a pooled connection:
# redis-py's execute_command around the same round trip cost ~80 µs more per flush (200 µs against
# 130 µs of the flushing process's CPU for 15 events, measured on this machine). After NOSCRIPT (a
# restarted or flushed Redis) the script is loaded again and the batch sent once more.
#
# On a plain single server (``raw_for``: no Cluster, Sentinel, TLS or RESP3) the bytes go over the
# client's own pipelined connection (``client/_resp.py``: an asyncio protocol feeding hiredis) instead
# of a pooled redis-py connection: redis-py's checkout, ``send_packed_command`` and ``read_response``
# around the same round trip are most of a flush's fixed cost (docs/performance.md, issue 12, "Fifth
# pass", for the measured difference). The others keep redis-py.
XADD_MANY = """
for i = 1, #KEYS do
  redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[1], '*', 'd', ARGV[i + 1])
end
return #KEYS
"""


class StreamWriter:
    def __init__(self, url: str, *, prefix: str, partitions: int, maxlen: int) -> None:
        self._prefix = prefix
        self._partitions = partitions
        self._maxlen = maxlen
        self._redis = connect(url, socket_timeout=PRODUCER_SOCKET_TIMEOUT)
        self._raw: RawRedis | None = raw_for(self._redis)
        self._xadd_many = self._redis.register_script(XADD_MANY)
        self._head = b"$7\r\nEVALSHA\r\n$40\r\n" + self._xadd_many.sha.encode() + b"\r\n"
        maxlen_raw = str(maxlen).encode()
        self._maxlen_arg = b"$%d\r\n%s\r\n" % (len(maxlen_raw), maxlen_raw)
        self._key_args: dict[str, bytes] = {}
        self._names: dict[str, StreamNames] = {}
        self._partition_of: dict[str, dict[str, str]] = {}
        self._groups_ready: set[str] = set()

    def names(self, stream: str) -> StreamNames:
        names = self._names.get(stream)
        if names is None:
            names = self._names[stream] = StreamNames(self._prefix, stream, self._partitions)
        return names

    def partition(self, stream: str, key: str) -> str:
        """The partition stream of ``key``, remembered (a dict lookup instead of encoding the key, its
        crc32 and a formatted name for every event: 0.6 µs each, measured). Keys are subjects, so the
        memory is bounded: past ``PARTITION_MEMORY`` keys it starts again."""
        known = self._partition_of.get(stream)
        if known is None:
            known = self._partition_of[stream] = {}
        name = known.get(key)
        if name is None:
            if len(known) >= PARTITION_MEMORY:
                known.clear()
            name = known[key] = self.names(stream).of_key(key)
        return name

    async def write(self, records: list[Record]) -> bool:
        """XADD ``records`` in one script call; False if Redis did not take them (if the reply was lost
        they may have landed: replaying them is harmless, consumers de-duplicate by event id)."""
        keys = [key for key, _ in records]
        # Events per partition (a record is a batch entry: ``events.batch_size``), for the counter.
        partitions: dict[str, int] = {}
        for key, data in records:
            partitions[key] = partitions.get(key, 0) + batch_size(data)
        try:
            await self._ensure_groups({logical(key) for key in partitions})
            if self._raw is not None:
                await self._send_raw(self._raw, self._packed(keys, records))
            elif isinstance(self._redis, Redis):
                packed = self._packed(keys, records)
                try:
                    await self._send(self._redis, packed)
                except NoScriptError:
                    await self._redis.script_load(XADD_MANY)
                    await self._send(self._redis, packed)
            else:  # a Cluster client routes by key: redis-py's script call (it reloads after NOSCRIPT)
                await self._xadd_many(keys=keys, args=[self._maxlen, *(data for _, data in records)])
        except (RedisError, OSError) as exc:
            self._groups_ready.clear()  # Redis may come back empty
            log.warning("bus: Redis unavailable (%s); spooling events", exc)
            return False
        for key, n in partitions.items():
            PUBLISHED.add_many(n, logical(key))
        return True

    def _packed(self, keys: list[str], records: list[Record]) -> bytes:
        """``EVALSHA sha n key… maxlen payload…`` in RESP, the keys' parts cached (a handful of partitions)."""
        n = len(records)
        parts = [b"*%d\r\n" % (2 * n + 4), self._head, b"$%d\r\n%d\r\n" % (len(str(n)), n)]
        key_args = self._key_args
        for key in keys:
            arg = key_args.get(key)
            if arg is None:
                raw = key.encode()
                arg = key_args[key] = b"$%d\r\n%s\r\n" % (len(raw), raw)
            parts.append(arg)
        parts.append(self._maxlen_arg)
        for _, data in records:
            parts.append(b"$%d\r\n" % len(data))
            parts.append(data)
            parts.append(b"\r\n")
        return b"".join(parts)

    @staticmethod
    async def _send_raw(raw: RawRedis, packed: bytes) -> None:
        try:
            await raw.packed(packed, within=PRODUCER_SOCKET_TIMEOUT)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            await raw.command(b"SCRIPT", b"LOAD", XADD_MANY, within=PRODUCER_SOCKET_TIMEOUT)
            await raw.packed(packed, within=PRODUCER_SOCKET_TIMEOUT)

    @staticmethod
    async def _send(redis: Redis, packed: bytes) -> None:
        pool = redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(packed, check_health=False)
            await conn.read_response()  # an error reply raises (NoScriptError, ResponseError)
        finally:
            await pool.release(conn)

    async def aclose(self) -> None:
        if self._raw is not None:
            await self._raw.aclose()
        await self._redis.aclose()

    async def _ensure_groups(self, names: set[str]) -> None:
        for name in names:
            if name in self._groups_ready:
                continue
            await ensure_groups(self._redis, self.names(name))
            self._groups_ready.add(name)


def logical(key: str) -> str:
    """``<prefix>bus:audit:3`` -> ``audit``."""
    return key.rsplit(":", 2)[-2]
