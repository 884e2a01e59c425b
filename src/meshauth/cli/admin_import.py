"""``meshauth admin users import FILE`` / ``meshauth admin clients import FILE``: JSON Lines bulk imports.

Each line is one object, as ``POST /admin/users:bulk`` (``/admin/clients:bulk``) takes in its array;
blank lines are skipped. Every line that is not valid (not UTF-8, not JSON, nested too deeply, a
refused item) is reported by its line number. The valid lines are written all or none by default —
one bad line and nothing is written — or, with ``--partial``, the valid ones are written and the bad
ones reported. Either way it is one transaction: an interrupted import writes nothing.

Progress (passwords hashed, rows written) goes to stderr about twice a second; the summary (counts
and every refused line) to stdout as JSON. Exit status: 0 when every line was written, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import typer

from meshauth.auth.bulk import Refusal, plan_clients, plan_users
from meshauth.auth.bulk_import import Report, import_clients, import_users
from meshauth.auth.bulk_store import Conflict
from meshauth.auth.hash_pool import HashPool
from meshauth.config_load import load_settings
from meshauth.db import create_engine, migrate

__all__ = ["clients_import", "read_lines", "users_import"]

MAX_LINE_BYTES = 1_048_576
BOM = b"\xef\xbb\xbf"  # what "UTF-8 with BOM" editors put first; JSON text has none (RFC 8259 §8.1)
SKIP_BYTES = 65_536  # read at a time from the part of a line past MAX_LINE_BYTES, which is refused
PROGRESS_INTERVAL = 0.5  # seconds between progress lines

_FILE = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="JSON Lines file, one item a line.")
_PARTIAL = typer.Option(False, "--partial", help="Write the valid lines even when some are refused.")


def _bounded_lines(f: BinaryIO) -> Iterator[bytes | None]:
    """The lines of ``f``, each None when it is longer than ``MAX_LINE_BYTES`` (plus CRLF): such a line
    is skipped in pieces, never held whole (a 1 GB line would be)."""
    limit = MAX_LINE_BYTES + 2
    while raw := f.readline(limit):
        if len(raw) < limit or raw.endswith(b"\n"):
            yield raw
            continue
        while (rest := f.readline(SKIP_BYTES)) and not rest.endswith(b"\n"):
            pass
        yield None


def read_lines(path: Path) -> tuple[list[Any], list[int], list[Refusal]]:
    """The decoded items of ``path`` with their line numbers, and the lines that are not JSON."""
    items: list[Any] = []
    lines: list[int] = []
    bad: list[Refusal] = []
    with path.open("rb") as f:
        for number, raw in enumerate(_bounded_lines(f), start=1):
            line = raw.strip() if raw is not None else None
            if line == b"":
                continue
            if line is None or len(line) > MAX_LINE_BYTES:
                bad.append(Refusal(number, f"line is over {MAX_LINE_BYTES} bytes"))
                continue
            if line.startswith(BOM):
                bad.append(
                    Refusal(number, "line starts with a byte order mark (U+FEFF): save the file as UTF-8 without one")
                )
                continue
            try:
                line.decode("utf-8")
                items.append(msgspec.json.decode(line))
            except UnicodeDecodeError as exc:
                bad.append(Refusal(number, f"invalid UTF-8 at byte {exc.start}"))
                continue
            except msgspec.DecodeError as exc:
                bad.append(Refusal(number, f"not valid JSON: {exc}"))
                continue
            except RecursionError:
                bad.append(Refusal(number, "nested too deeply"))
                continue
            lines.append(number)
    return items, lines, bad


class _Progress:
    def __init__(self, noun: str) -> None:
        self._noun = noun
        self._last = 0.0
        self._start = time.perf_counter()

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self._last < PROGRESS_INTERVAL:
            return
        self._last = now
        what = "passwords hashed" if stage == "hashed" else f"{self._noun} written"
        rate = done / max(now - self._start, 1e-9)
        typer.echo(f"{what}: {done:,}/{total:,} ({rate:,.0f}/s)", err=True)


Importer = Callable[..., Awaitable[Report]]
Planner = Callable[[Sequence[Any], Sequence[int]], tuple[Sequence[Any], list[Refusal]]]


def _import(path: Path, partial: bool, importer: Importer, planner: Planner, noun: str) -> None:
    settings = load_settings()
    migrate(settings.sqlalchemy_url)
    items, lines, bad = read_lines(path)
    if bad and not partial:
        # Nothing will be written: still check the other lines, so every bad line is reported at once.
        _, refused = planner(items, lines)
        _finish(Report(False, [], [], sorted([*bad, *refused], key=lambda r: r.index)), len(items) + len(bad))
    pool = HashPool(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        processes=settings.bulk_hash_processes,
    )

    async def main() -> Report:
        engine = create_engine(settings.sqlalchemy_url)
        try:
            return await importer(engine, pool, items, partial=partial, indexes=lines, progress=_Progress(noun))
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(main())
    except Conflict as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        pool.close()
    refused = sorted([*bad, *report.refused], key=lambda r: r.index)
    _finish(Report(report.committed, report.created, report.updated, refused), len(items) + len(bad))


def _finish(report: Report, lines: int) -> None:
    summary = {
        "committed": report.committed,
        "lines": lines,
        "created": len(report.created),
        "updated": len(report.updated),
        "refused": [{"line": r.index, "reason": r.reason} for r in report.refused],
    }
    typer.echo(json.dumps(summary, indent=2))
    if report.refused:
        written = "the other lines were written" if report.committed else "nothing was written (use --partial)"
        typer.echo(f"{len(report.refused)} line(s) refused; {written}", err=True)
        raise typer.Exit(1)


def users_import(path: Path = _FILE, partial: bool = _PARTIAL) -> None:
    """Create or update users from a JSON Lines file (``password`` or an argon2id ``password_hash``)."""
    _import(path, partial, import_users, plan_users, "users")


def clients_import(path: Path = _FILE, partial: bool = _PARTIAL) -> None:
    """Create or update OAuth clients from a JSON Lines file (``client_secret`` or ``client_secret_hash``)."""
    _import(path, partial, import_clients, plan_clients, "clients")
