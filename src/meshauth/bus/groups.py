"""Creating a stream's declared consumer groups (``streams.GROUPS``) on every partition."""

from __future__ import annotations

from redis.exceptions import ResponseError

from meshauth.bus.streams import StreamNames
from meshauth.redis_client import RedisConn


async def ensure_groups(redis: RedisConn, names: StreamNames) -> None:
    """Create every declared group on every partition, at id 0 (BUSYGROUP: it exists)."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in names.all():
            for group in names.groups:
                pipe.xgroup_create(stream, group, id="0", mkstream=True)
        results = await pipe.execute(raise_on_error=False)
    for result in results:
        if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
            raise result
        if isinstance(result, Exception) and not isinstance(result, ResponseError):
            raise result
