"""Database metrics: every statement SQLAlchemy sends is counted by its kind."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from meshauth.db.engine import create_engine
from meshauth.db.pool_metrics import STATEMENTS, statement_verb


@pytest.mark.parametrize(
    ("statement", "verb"),
    [
        ("SELECT 1", "select"),
        ("  \n select x FROM t", "select"),
        ("INSERT INTO t VALUES (1)", "insert"),
        ("UPDATE t SET x = 1", "update"),
        ("DELETE FROM t", "delete"),
        ("PRAGMA journal_mode=WAL", "other"),
        ("", "other"),
        ("SELECTED", "select"),  # a prefix is enough: SQLAlchemy never sends such a word first
        ("\x00\udcff", "other"),
    ],
)
def test_statement_verb(statement: str, verb: str) -> None:
    assert statement_verb(statement) == verb


async def test_statements_are_counted_by_kind(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    before = {v: STATEMENTS.counts[(v,)] for v in ("select", "insert", "other")}
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(sa.text("INSERT INTO t VALUES (:x)"), [{"x": 1}, {"x": 2}, {"x": 3}])
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM t"))).scalar() == 3
            await conn.execute(sa.text("SELECT x FROM t"))
    finally:
        await engine.dispose()
    assert STATEMENTS.counts[("select",)] - before["select"] == 2
    assert STATEMENTS.counts[("insert",)] - before["insert"] == 1  # executemany: one statement
    assert STATEMENTS.counts[("other",)] - before["other"] >= 1  # the CREATE TABLE
