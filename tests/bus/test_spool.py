import os
import subprocess
import sys
from pathlib import Path

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
