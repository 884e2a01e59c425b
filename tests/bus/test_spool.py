import os
import struct
import subprocess
import sys
from pathlib import Path

import msgspec

from meshauth.bus.spool import Spool


def _drain(spool: Spool) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    while spool.pending:
        records, consumed = spool.read(7)
        out.extend(records)
        spool.commit(consumed)
    return out


def test_records_come_back_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.open()
    records = [(f"s:{i % 3}", f"event {i}".encode()) for i in range(100)]
    assert spool.append(records[:60]) == 60
    assert spool.append(records[60:]) == 40
    assert _drain(spool) == records
    assert not spool.pending
    spool.close()


def test_bounded_append_takes_what_fits(tmp_path: Path) -> None:
    """The spool's size limit: append takes a prefix that fits and says how many."""
    spool = Spool(tmp_path, 1000)
    spool.open()
    taken = spool.append([("s:0", b"x" * 100)] * 20)
    assert 0 < taken < 20
    assert spool.used <= 1000
    assert spool.append([("s:0", b"x" * 100)]) == 0
    spool.close()


def test_a_dead_producers_spool_is_adopted_and_replayed_first(tmp_path: Path) -> None:
    """A spool file whose owner is gone (its flock is free) is replayed before the new owner's own."""
    script = (
        "import sys; from pathlib import Path; from meshauth.bus.spool import Spool\n"
        "s = Spool(Path(sys.argv[1]), 1 << 20); s.open()\n"
        "s.append([('s:1', b'old-%d' % i) for i in range(5)])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env)
    live = Spool(tmp_path, 1 << 20)
    live.open()
    live.append([("s:1", b"new")])
    assert [d for _, d in _drain(live)] == [b"old-%d" % i for i in range(5)] + [b"new"]
    live.close()
    assert list(tmp_path.glob("spool-*.bin")) == []


def test_a_live_producers_spool_is_left_alone(tmp_path: Path) -> None:
    first = Spool(tmp_path, 1 << 20)
    first.open()
    first.append([("s:0", b"mine")])
    second = Spool(tmp_path, 1 << 20)
    second.open()
    assert not second.pending
    assert _drain(first) == [("s:0", b"mine")]
    first.close()
    second.close()


def test_a_torn_tail_ends_the_file(tmp_path: Path) -> None:
    """A record cut short by a crash is dropped; the whole ones before it are replayed."""
    script = (
        "import sys, os; from pathlib import Path; from meshauth.bus.spool import Spool\n"
        "s = Spool(Path(sys.argv[1]), 1 << 20); s.open()\n"
        "s.append([('s:0', b'whole')])\n"
        "s._own.handle.write(b'\\x00\\x00\\x01\\x00partial'); s._own.handle.flush()\n"
        "os._exit(0)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env)
    spool = Spool(tmp_path, 1 << 20)
    spool.open()
    assert _drain(spool) == [("s:0", b"whole")]
    spool.close()


def _framed(record: tuple[str, bytes]) -> bytes:
    body = msgspec.msgpack.encode(record)
    return struct.pack(">I", len(body)) + body


def _drain_at_most(spool: Spool, reads: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for _ in range(reads):
        if not spool.pending:
            return out
        records, consumed = spool.read(1000)
        out.extend(records)
        spool.commit(consumed)
    raise AssertionError(f"still pending after {reads} reads: replay makes no progress")


def test_a_record_that_is_not_utf8_is_skipped_and_the_next_replayed(tmp_path: Path) -> None:
    """msgspec raises UnicodeDecodeError (not a DecodeError) for such a stream name: it escaped
    ``read``, the producer's flush task restarted on it every 0.1 s, the spool never drained and every
    later event was spooled behind it until the spool was full, then dropped."""
    body = msgspec.msgpack.encode(("s:0", b"x")).replace(b"s:0", b"\xff:0")
    data = _framed(("s:0", b"before")) + struct.pack(">I", len(body)) + body + _framed(("s:0", b"after"))
    (tmp_path / "spool-1-00000000.bin").write_bytes(data)  # a dead producer's (no lock held)
    spool = Spool(tmp_path, 1 << 30)
    spool.open()
    assert _drain_at_most(spool, 10) == [("s:0", b"before"), ("s:0", b"after")]
    spool.close()


def test_a_length_no_record_has_ends_the_file_rather_than_the_replay(tmp_path: Path) -> None:
    """A length past the read window (4 MiB; a record is at most a batch of 1 MiB) mid-file, with more
    than the window behind it: ``read`` found no whole record and returned nothing consumed, forever —
    the replay spun on it, the spool never drained. Nothing after it can be framed again: the rest of
    the file is dropped, with a warning."""
    filler = [("s:0", b"y" * 1000)] * 6000  # ~6 MiB behind the bad length
    data = _framed(("s:0", b"before")) + struct.pack(">I", 0xFFFFFFF0) + b"".join(map(_framed, filler))
    (tmp_path / "spool-1-00000000.bin").write_bytes(data)
    spool = Spool(tmp_path, 1 << 30)
    spool.open()
    assert _drain_at_most(spool, 10) == [("s:0", b"before")]
    spool.close()
    assert list(tmp_path.glob("spool-*.bin")) == []
