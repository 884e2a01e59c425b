"""The public surface of meshauth.client: pinned names, typing marker, configuration objects."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import meshauth.client as client
from meshauth.client import BatchConfig, BreakerConfig, CacheConfig, PolicyClient, PoolConfig, RetryConfig


def test_public_names_are_pinned() -> None:
    """The export list is exactly this, sorted: the API never grows by accident."""
    assert client.__all__ == [
        "DEFAULT_TIMEOUT",
        "FULLY_CONSISTENT",
        "MINIMIZE_LATENCY",
        "REASON_INVALID_REQUEST",
        "REASON_UNAVAILABLE",
        "AiohttpTransport",
        "BalanceConfig",
        "BatchConfig",
        "BreakerConfig",
        "CacheConfig",
        "Check",
        "CircuitBreaker",
        "Consistency",
        "Decision",
        "EjectionConfig",
        "H1Transport",
        "PolicyClient",
        "PoolConfig",
        "Question",
        "Resource",
        "Response",
        "RetryBudget",
        "RetryConfig",
        "State",
        "StateFollower",
        "Subject",
        "Transport",
        "TransportError",
        "WarmConfig",
        "announce",
        "at_least",
    ]
    assert client.__all__ == sorted(client.__all__, key=lambda n: (not n.isupper(), n))
    assert all(hasattr(client, name) for name in client.__all__)


def test_package_is_typed() -> None:
    """py.typed ships with the package (PEP 561)."""
    assert (Path(client.__file__).parent / "py.typed").is_file()


def test_client_imports_no_service_code() -> None:
    """The library depends on wire types and shared layers only, never on auth/policy service modules."""
    root = Path(client.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text()
        for banned in ("meshauth.auth", "meshauth.policy", "meshauth.http", "meshauth.granian_server"):
            assert banned not in text, f"{path.name} imports {banned}"


@pytest.mark.parametrize("cls", [BatchConfig, BreakerConfig, CacheConfig, PoolConfig, RetryConfig])
def test_config_objects_are_frozen_keyword_only_and_comparable(cls: type) -> None:
    """Configs take keywords only, compare by value, show their values, and cannot be changed."""
    a, b = cls(), cls()
    assert a == b and repr(a).startswith(cls.__name__ + "(")
    field = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(a, field, 1)
    with pytest.raises(TypeError):
        cls(1)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (BatchConfig, {"max_batch": 0}, "max_batch"),
        (BatchConfig, {"max_wait": float("nan")}, "max_wait"),
        (BatchConfig, {"linger": -0.001}, "linger"),
        (BatchConfig, {"max_wait": 0.001, "linger": 0.002}, "linger"),
        (BreakerConfig, {"failure_rate": 1.5}, "failure_rate"),
        (BreakerConfig, {"probes": 0}, "probes"),
        (BreakerConfig, {"count": "requests"}, "count"),
        (CacheConfig, {"ttl": -1.0}, "ttl"),
        (CacheConfig, {"stale_if_error": float("inf")}, "stale_if_error"),
        (RetryConfig, {"ratio": 2.0}, "ratio"),
        (RetryConfig, {"initial_balance": -1.0}, "initial_balance"),
        (RetryConfig, {"max_balance": 1.0, "initial_balance": 2.0}, "initial_balance"),
        (PoolConfig, {"max_response_bytes": 10}, "max_response_bytes"),
    ],
)
def test_bad_config_values_name_the_field(cls: type, kwargs: dict[str, object], field: str) -> None:
    """An invalid value is a ValueError whose message names the field."""
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"urls": []}, {"urls": "http://x"}, {"urls": ["ftp://x"]}, {"store": "bad store"}, {"token": "a b"}],
)
def test_client_refuses_bad_arguments(kwargs: dict[str, object]) -> None:
    """Bad URLs, store names or tokens are refused at construction."""
    args: dict[str, object] = {"urls": ["http://127.0.0.1:1"], **kwargs}
    urls = args.pop("urls")
    with pytest.raises(ValueError, match=r"must|not"):
        PolicyClient(urls, **args)  # type: ignore[arg-type]


def test_the_client_refuses_credentials_in_a_url() -> None:
    """aiohttp would send them as Basic (which the decision API does not take), H1Transport not at
    all: refused at construction, pointing at ``token=``."""
    with pytest.raises(ValueError, match=r"credentials.*token="):
        PolicyClient(["http://svc:secret@policy:8090"])
