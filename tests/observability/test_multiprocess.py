# mypy: disable-error-code="no-untyped-call"
"""Per-process value files: written lock-free here, read and merged by prometheus_client's collector."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from meshauth.observability import multiprocess
from meshauth.observability.metrics import IntCounters, IntHistogram


def merged(directory: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(directory))
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process in multiprocess mode, writing to ``tmp_path`` (metrics made here are unregistered after)."""
    monkeypatch.setenv(multiprocess.ENV, str(tmp_path))
    monkeypatch.setattr(multiprocess, "_ACTIVE", True)
    opened: dict[str, multiprocess.ValueFile] = {}
    monkeypatch.setattr(multiprocess, "_files", opened)
    before = set(REGISTRY._collector_to_names)
    yield tmp_path
    for f in opened.values():
        f.close()
    for collector in set(REGISTRY._collector_to_names) - before:
        REGISTRY.unregister(collector)


def test_a_value_file_reads_back_through_prometheus_clients_reader(tmp_path: Path) -> None:
    """Entries written here are what ``MmapedDict`` (the collector's reader) finds, with their values."""
    f = multiprocess.ValueFile(tmp_path / "counter_fast-1.db")
    a = mmap_key("m", "m_total", ["k"], ["a"], "help")
    b = mmap_key("m", "m_total", ["k"], ["b" * 13], "help")  # another padding length
    f.view[f.slot(a)] = 3.0
    f.view[f.slot(b)] = 5.0
    f.view[f.slot(a)] = 4.0
    reader = MmapedDict(str(tmp_path / "counter_fast-1.db"), read_mode=True)
    read = {k: v for k, v, _ts in reader.read_all_values()}
    reader.close()
    f.close()
    assert read == {a: 4.0, b: 5.0}


def test_a_value_file_grows_past_its_first_mapping(tmp_path: Path) -> None:
    """Thousands of label sets (beyond the first 64 KiB) keep their values, old and new."""
    f = multiprocess.ValueFile(tmp_path / "counter_fast-2.db")
    keys = [mmap_key("m", "m_total", ["k"], [str(i)], "help") for i in range(3000)]
    for i, key in enumerate(keys):
        f.view[f.slot(key)] = float(i)
    f.view[f.slot(keys[0])] = 42.0
    read = {k: v for k, v, _ts, _pos in MmapedDict.read_all_values_from_file(str(f.path))}
    f.close()
    assert len(read) == 3000
    assert read[keys[0]] == 42.0
    assert read[keys[2999]] == 2999.0


def test_counters_from_several_processes_are_summed(files: Path) -> None:
    """Two processes' files for one counter: the merged scrape shows the sum per label set."""
    counter = IntCounters("meshauth_test_mp_events", "Events.", ["kind"])
    counter.add("a")
    counter.add("a")
    counter.add_many(5, "b")
    other = multiprocess.ValueFile(files / f"counter_fast-{os.getpid() + 1}.db")
    key = mmap_key("meshauth_test_mp_events", "meshauth_test_mp_events_total", ["kind"], ["a"], "Events.")
    other.view[other.slot(key)] = 10.0
    other.close()
    samples = merged(files)
    assert samples[("meshauth_test_mp_events_total", frozenset({("kind", "a")}))] == 12.0
    assert samples[("meshauth_test_mp_events_total", frozenset({("kind", "b")}))] == 5.0


def test_set_publishes_a_count_kept_elsewhere(files: Path) -> None:
    counter = IntCounters("meshauth_test_mp_published", "Published.", ["result"])
    counter.set(7, "hit")
    counter.set(9, "hit")
    assert merged(files)[("meshauth_test_mp_published_total", frozenset({("result", "hit")}))] == 9.0


def test_histograms_merge_into_cumulative_buckets(files: Path) -> None:
    """Observations from this process land in the right buckets; _count and _sum follow."""
    hist = IntHistogram("meshauth_test_mp_seconds", "Latency.", ["endpoint"], buckets=(0.001, 0.01))
    for value in (0.0005, 0.001, 0.005, 0.5):
        hist.observe(value, "/x")
    samples = merged(files)

    def bucket(le: str) -> float:
        return samples[("meshauth_test_mp_seconds_bucket", frozenset({("endpoint", "/x"), ("le", le)}))]

    assert (bucket("0.001"), bucket("0.01"), bucket("+Inf")) == (2.0, 3.0, 4.0)
    assert samples[("meshauth_test_mp_seconds_count", frozenset({("endpoint", "/x")}))] == 4.0
    assert samples[("meshauth_test_mp_seconds_sum", frozenset({("endpoint", "/x")}))] == pytest.approx(0.5065)


def test_prepare_dir_empties_a_configured_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files a previous run left behind are gone before the workers start; the directory stays at exit."""
    monkeypatch.delenv(multiprocess.ENV, raising=False)
    configured = tmp_path / "metrics"
    configured.mkdir()
    (configured / "counter_fast-99.db").write_bytes(b"old")
    directory = multiprocess.prepare_dir(configured, "meshauth.policy.app")
    assert directory == configured
    assert os.environ[multiprocess.ENV] == str(configured)
    assert list(configured.iterdir()) == []
    multiprocess.remove_dir(directory, configured)
    assert configured.is_dir()
    assert multiprocess.ENV not in os.environ


def test_a_temporary_directory_is_removed_at_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(multiprocess.ENV, raising=False)
    directory = multiprocess.prepare_dir(None, "auth")
    assert directory.is_dir()
    multiprocess.remove_dir(directory, None)
    assert not directory.exists()


def test_a_dead_workers_live_gauges_are_swept(tmp_path: Path) -> None:
    """A killed worker (no exit hook ran) stops counting in live gauges; a live one keeps its file."""
    dead = 2**22 + 12345  # above the default pid_max: no such process
    for pid in (dead, os.getpid()):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
    (tmp_path / f"counter_fast-{dead}.db").write_bytes(b"")
    multiprocess.sweep_dead(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{os.getpid()}.db", f"counter_fast-{dead}.db"]
    )
