"""Redis Sentinel and Redis Cluster, real (``servers.py``), one of each per module: ``ha`` runs a
test once through a ``redis+sentinel://`` URL and once through a ``redis+cluster://`` URL, with the
prefix each needs (on the cluster, one hash tag for every meshauth key)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from meshauth.redis_client import RedisConn, connect
from tests.conftest import ADMIN_TIMEOUT
from tests.ha.servers import ClusterSetup, SentinelSetup, cluster_setup, sentinel_setup


@dataclass(frozen=True)
class Ha:
    kind: str
    url: str
    prefix: str


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    with sentinel_setup(tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    with cluster_setup(tmp_path_factory.mktemp("cluster")) as setup:
        yield setup


@pytest.fixture(params=["sentinel", "cluster"])
async def ha(request: pytest.FixtureRequest) -> Ha:
    """The topology's URL, flushed first."""
    if request.param == "sentinel":
        setup: SentinelSetup | ClusterSetup = request.getfixturevalue("sentinel")
        found = Ha("sentinel", setup.url, "meshauth:")
    else:
        setup = request.getfixturevalue("cluster")
        found = Ha("cluster", setup.url, "{meshauth}:")
    client = connect(found.url, socket_timeout=ADMIN_TIMEOUT)  # the fixture's own command, as tests/conftest.py
    await client.flushall()
    await client.aclose()
    return found


@pytest.fixture
async def ha_redis(ha: Ha) -> AsyncIterator[RedisConn]:
    """The tests' own client through the topology (it checks key names, and is the L2 of a client under
    test), with the fixtures' timeouts as the ``redis`` fixture: not the services' 0.5 s."""
    client = connect(ha.url, socket_timeout=ADMIN_TIMEOUT)
    yield client
    await client.aclose()
