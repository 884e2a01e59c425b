"""The shared write signal: workers mapping one file see each other's writes, and survive it being
replaced or impossible to create."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshauth.policy.write_signal import SIZE, WriteSignal


def test_a_write_is_seen_by_the_other_mapping_once(tmp_path: Path) -> None:
    one, two = WriteSignal(tmp_path / "sig"), WriteSignal(tmp_path / "sig")
    assert not one.changed() and not two.changed()
    one.bump()
    assert not one.changed()  # the writer is already current
    assert two.changed()
    assert not two.changed()  # noted: not a change twice


def test_every_write_is_a_change_even_back_to_back(tmp_path: Path) -> None:
    one, two = WriteSignal(tmp_path / "sig"), WriteSignal(tmp_path / "sig")
    for _ in range(100):
        one.bump()
        assert two.changed()


def test_a_write_from_another_process_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "sig"
    mine = WriteSignal(path)
    code = "import sys; from pathlib import Path; from meshauth.policy.write_signal import WriteSignal; "
    code += "WriteSignal(Path(sys.argv[1])).bump()"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    assert mine.changed()


def test_a_longer_file_is_used_as_is(tmp_path: Path) -> None:
    """A file longer than the word is mapped, never truncated (a truncated mapping is a SIGBUS)."""
    path = tmp_path / "sig"
    path.write_bytes(b"." * 100)
    one, two = WriteSignal(path), WriteSignal(path)
    one.bump()
    assert two.changed()
    assert path.stat().st_size == 100


def test_a_replaced_file_is_mapped_again_on_the_tick(tmp_path: Path) -> None:
    path = tmp_path / "sig"
    old = WriteSignal(path)
    assert not old.check_file()  # same file: nothing to do
    path.unlink()
    new_worker = WriteSignal(path)  # e.g. a respawned worker creates a new file
    new_worker.bump()
    assert not old.changed()  # still on the deleted file …
    assert old.check_file()  # … until the tick notices and maps the new one
    new_worker.bump()
    assert old.changed()
    assert path.stat().st_size == SIZE


def test_no_file_possible_means_no_signal_but_no_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    sig = WriteSignal(blocker / "sig")  # parent is a file: cannot be created
    sig.bump()
    assert not sig.changed()
    assert not sig.check_file()  # tries again on each tick, without raising or forcing refreshes


def test_file_is_private_to_the_service_user(tmp_path: Path) -> None:
    WriteSignal(tmp_path / "sig")
    assert os.stat(tmp_path / "sig").st_mode & 0o077 == 0


def test_a_failing_write_is_logged_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """A full disk makes the announcement fail with an error (pwrite), never a SIGBUS (mapped store)."""
    one, two = WriteSignal(tmp_path / "sig"), WriteSignal(tmp_path / "sig")

    def full(*_args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    one.bump()
    assert "cannot write the policy write signal" in caplog.text
    assert not two.changed()


def test_a_file_that_cannot_be_made_warns_once(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    sig = WriteSignal(blocker / "sig")
    for _ in range(20):  # the refresh tick retries
        sig.check_file()
    assert caplog.text.count("cannot map the policy write signal") == 1
