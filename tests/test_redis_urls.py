"""Sentinel and Cluster URLs: what parses, and the one-line error for what does not (at config load)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meshauth.config_load import ConfigError, load_settings
from meshauth.redis_urls import Cluster, Sentinels, hash_tag, parse_ha_url


def test_sentinel_url_parts() -> None:
    url = "rediss+sentinel://app:p%40ss@s1:26380,[::1],s3/my%20primary/3?sentinel_password=sp"
    assert parse_ha_url(url) == Sentinels(
        hosts=(("s1", 26380), ("::1", 26379), ("s3", 26379)),
        service="my primary",
        db=3,
        username="app",
        password="p@ss",
        tls=True,
        sentinel_password="sp",
    )


def test_cluster_url_parts() -> None:
    assert parse_ha_url("redis+cluster://:pw@n1:7000,n2") == Cluster(
        hosts=(("n1", 7000), ("n2", 6379)), username=None, password="pw", tls=False
    )
    assert parse_ha_url("rediss+cluster://n1/0") == Cluster(
        hosts=(("n1", 6379),), username=None, password=None, tls=True
    )


@pytest.mark.parametrize("url", ["redis://h:6379/0", "valkey://h", "unix:///tmp/s", "rediss://h"])
def test_single_server_urls_are_not_ha(url: str) -> None:
    assert parse_ha_url(url) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://s1:26379", "names the monitored primary"),
        ("redis+sentinel://s1:26379/", "names the monitored primary"),
        ("redis+sentinel://s1/m/x", "not a number from 0 to 15"),
        ("redis+sentinel://s1/m/16", "not a number from 0 to 15"),
        ("redis+sentinel://s1/m/0/extra", "names the monitored primary"),
        ("redis+sentinel:///m", "no host"),
        ("redis+sentinel://s1,,s2/m", "no host"),
        ("redis+sentinel://s1:0/m", "not a number from 1 to 65535"),
        ("redis+sentinel://s1:99999/m", "not a number from 1 to 65535"),
        ("redis+sentinel://s1:port/m", "not a number from 1 to 65535"),
        ("redis+sentinel://[::1/m", "not [IPv6]:port"),
        ("redis+sentinel://::1/m", "bracket an IPv6"),
        ("redis+sentinel://s 1/m", "cannot have"),
        ("redis+sentinel://s1/m?db=2", "unknown URL option 'db'"),
        ("redis+sentinel://s1/m?sentinel_password=a&sentinel_password=b", "given 2 times"),
        ("redis+sentinel://s1/m#frag", "no fragment"),
        ("redis+cluster://n1/1", "database 0 only"),
        ("redis+cluster://n1?password=x", "unknown URL option"),
        ("redis+cluster://" + ",".join(f"n{i}" for i in range(65)), "at most 64"),
        ("redis+cluster://\udcff/", "cannot have"),
        ("redis+cluster://h\u00e9te", "cannot have"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=r"expected|fragment|give it once") as caught:
        parse_ha_url(url)
    assert why in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bad_url_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHAUTH_CONFIG_FILE", raising=False)
    monkeypatch.setenv("MESHAUTH_REDIS_URL", "redis+sentinel://:hunter2@s1:26379,s2:26379")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    (line,) = caught.value.problems
    assert line.startswith("meshauth: configuration error: MESHAUTH_REDIS_URL=")
    assert "names the monitored primary" in line and "hunter2" not in line


@pytest.mark.parametrize("url", ["redis+cluster://n1:6379,n2:6379", "rediss+cluster://n1:6379"])
@pytest.mark.parametrize("variable", ["MESHAUTH_REDIS_URL", "REDIS_URL"])
def test_a_cluster_url_alone_gets_the_hash_tagged_prefix(
    monkeypatch: pytest.MonkeyPatch, url: str, variable: str
) -> None:
    """Every meshauth key in one slot, or MULTI/Lua/MGET/XREAD over several keys fail with CROSSSLOT:
    with a Cluster URL and no prefix set, the prefix is ``{meshauth}:`` without being asked for."""
    monkeypatch.delenv("MESHAUTH_CONFIG_FILE", raising=False)
    monkeypatch.delenv("MESHAUTH_REDIS_PREFIX", raising=False)
    monkeypatch.setenv(variable, url)
    assert load_settings().redis_prefix == "{meshauth}:"
    monkeypatch.delenv(variable)
    assert load_settings(redis_url=url).redis_prefix == "{meshauth}:"
    assert load_settings().redis_prefix == "meshauth:"  # one server: the plain default
    assert load_settings(redis_url="redis+sentinel://s1/m").redis_prefix == "meshauth:"


def test_a_cluster_prefix_set_explicitly_must_carry_a_hash_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicitly set prefix is never replaced: untagged, it is a one-line error naming the variable."""
    monkeypatch.delenv("MESHAUTH_CONFIG_FILE", raising=False)
    monkeypatch.setenv("MESHAUTH_REDIS_URL", "redis+cluster://n1:6379,n2:6379")
    for untagged in ("meshauth:", "mesh{}auth:"):
        monkeypatch.setenv("MESHAUTH_REDIS_PREFIX", untagged)
        with pytest.raises(ConfigError) as caught:
            load_settings()
        (line,) = caught.value.problems
        assert line.startswith(f"meshauth: configuration error: MESHAUTH_REDIS_PREFIX={untagged!r}: ")
        assert "{meshauth}:" in line
    monkeypatch.setenv("MESHAUTH_REDIS_PREFIX", "{tenant-a}:")
    assert load_settings().redis_prefix == "{tenant-a}:"
    monkeypatch.delenv("MESHAUTH_REDIS_PREFIX")
    with pytest.raises(ConfigError, match=re.escape("redis_prefix='meshauth:'")):
        load_settings(redis_prefix="meshauth:")
    monkeypatch.setenv("MESHAUTH_REDIS_URL", "redis+sentinel://s1/m")  # one server at a time: any prefix
    monkeypatch.setenv("MESHAUTH_REDIS_PREFIX", "meshauth:")
    assert load_settings().redis_url == "redis+sentinel://s1/m"


def test_a_cluster_prefix_from_the_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The same from a TOML file: unset there, the tagged default; set untagged, an error naming the key."""
    monkeypatch.delenv("MESHAUTH_REDIS_PREFIX", raising=False)
    monkeypatch.delenv("MESHAUTH_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    config = tmp_path / "meshauth.toml"
    config.write_text('redis_url = "redis+cluster://n1:6379"\n')
    monkeypatch.setenv("MESHAUTH_CONFIG_FILE", str(config))
    assert load_settings().redis_prefix == "{meshauth}:"
    config.write_text('redis_url = "redis+cluster://n1:6379"\nredis_prefix = "meshauth:"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    (line,) = caught.value.problems
    assert line.startswith(f"meshauth: configuration error: redis_prefix in {config}=") and "{meshauth}:" in line


@pytest.mark.parametrize(
    ("prefix", "tag"),
    [
        ("{meshauth}:", "meshauth"),
        ("app:{m}:", "m"),
        ("{}:", None),
        ("meshauth:", None),
        ("}{x:", None),
        ("{a}{b}:", "a"),
    ],
)
def test_hash_tag_is_the_first_braced_part_as_cluster_reads_it(prefix: str, tag: str | None) -> None:
    assert hash_tag(prefix) == tag


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://:top/secret@s1:26379/mymaster",  # an unencoded '/' cuts the password
        "redis+cluster://:top/secret@n1:6379",
        "redis+cluster://user:top?secret@n1:6379",  # an unencoded '?'
        "redis+sentinel://s1/mymaster?sentinel_password=topsecret&x",  # a query that does not parse
        "redis://:top/secret@host:6379/0",  # the single-server check too
        "redis://user:top?secret@host:6379/0",
    ],
)
def test_no_part_of_a_password_is_shown_when_a_url_is_refused(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.delenv("MESHAUTH_CONFIG_FILE", raising=False)
    monkeypatch.setenv("MESHAUTH_REDIS_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    (line,) = caught.value.problems
    assert line.startswith("meshauth: configuration error: MESHAUTH_REDIS_URL=")
    assert "top" not in line and "secret" not in line.replace("sentinel_password", ""), line
    assert "\n" not in line


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+cluster://n1:\u00b2", "is not a number from 1 to 65535"),  # '²' is a digit to str.isdigit
        ("redis+cluster://n1:\u0666\u0663\u0667\u0669", "is not a number from 1 to 65535"),  # Arabic-Indic 6379
        ("redis+sentinel://s1:" + "9" * 5000 + "/m", "is not a number from 1 to 65535"),  # past int()'s limit
        ("redis+sentinel://s1/m/\u00b2", "is not a number from 0 to 15"),
        ("redis+sentinel://s1/m/" + "1" * 5000, "is not a number from 0 to 15"),
    ],
)
def test_ports_and_databases_are_ascii_digits(url: str, why: str) -> None:
    with pytest.raises(ValueError, match="expected") as caught:
        parse_ha_url(url)
    assert why in str(caught.value)
    assert len(str(caught.value)) < 300
