"""connect(): which client each URL form gets, and with what (unit; real servers in tests/ha)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from meshauth.client._cache import DecisionL2
from meshauth.redis_client import DEFAULT_CONNECT_TIMEOUT, SentinelRedis, connect


async def test_a_sentinel_url_is_the_primary_found_through_its_sentinels() -> None:
    client = connect("rediss+sentinel://app:pw@s1:26380,s2/mymaster/2?sentinel_password=sp", socket_timeout=3.0)
    assert isinstance(client, SentinelRedis) and client.via is not None
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in client.via.sentinels
    ] == [("s1", 26380), ("s2", 26379)]
    asked = client.via.sentinels[0].connection_pool.connection_kwargs
    assert (asked["password"], asked["socket_timeout"]) == ("sp", DEFAULT_CONNECT_TIMEOUT)
    primary = client.connection_pool.connection_kwargs
    assert (primary["db"], primary["username"], primary["password"], primary["socket_timeout"]) == (2, "app", "pw", 3.0)
    assert client.connection_pool.service_name == "mymaster"  # type: ignore[attr-defined]
    assert client.connection_pool.connection_class.__name__ == "SentinelManagedSSLConnection"
    await client.aclose()


async def test_a_cluster_url_is_a_cluster_client() -> None:
    client = connect("redis+cluster://:pw@n1:7000,n2", socket_timeout=2.0)
    assert isinstance(client, RedisCluster)
    assert list(client.nodes_manager.startup_nodes) == ["n1:7000", "n2:6379"]
    assert client.nodes_manager.connection_kwargs["password"] == "pw"
    assert client.nodes_manager.connection_kwargs["socket_timeout"] == 2.0
    await client.aclose()


async def test_a_plain_url_is_one_server() -> None:
    client = connect("valkey://cache:6380/1")
    assert type(client) is Redis
    assert client.connection_pool.connection_kwargs["port"] == 6380
    await client.aclose()


async def test_l2_refuses_an_untagged_prefix_on_a_cluster() -> None:
    """A batch's MGET would span slots (CROSSSLOT): refused when the client is built, not per check."""
    client = connect("redis+cluster://n1:7000")
    with pytest.raises(ValueError, match="hash tag"):
        DecisionL2(client, prefix="meshauth:decision:", timeout=0.02)
    DecisionL2(client, prefix="{meshauth}:decision:", timeout=0.02)
    DecisionL2(connect("redis://h"), prefix="meshauth:decision:", timeout=0.02)  # one server: any prefix
    await client.aclose()
