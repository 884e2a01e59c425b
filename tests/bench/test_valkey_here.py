"""The benchmarks' private Valkey: answers, runs in the benchmark's own session (so the kernel's
autogroup is the benchmark's and nice applies against its idle-poll spinners), and is gone afterwards."""

from __future__ import annotations

import os

import pytest
import redis

from meshauth.bench.valkey_here import local_valkey


def test_local_valkey_answers_in_our_session_and_stops() -> None:
    with local_valkey() as valkey:
        client = redis.Redis(port=valkey.port, socket_timeout=2)
        assert client.ping()
        assert client.config_get("save") == {"save": ""}  # no snapshots (forks) during a run
        assert os.getsid(valkey.pid) == os.getsid(0)
        client.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=valkey.port, socket_timeout=2).ping()
