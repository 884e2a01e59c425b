import msgspec
import pytest
import sqlalchemy as sa

from meshauth.audit.store import AuditWriter
from meshauth.bus.entries import Delivery
from meshauth.bus.events import audit
from meshauth.bus.handling import TransientError
from meshauth.db import create_engine
from meshauth.db.tables import audit_log


async def _rows(url: str) -> list[dict[str, object]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(sa.select(audit_log).order_by(audit_log.c.id))]
    finally:
        await engine.dispose()


async def test_a_redelivered_batch_changes_nothing(db_url: str) -> None:
    """Idempotent by event id, on SQLite and PostgreSQL."""
    batch = [Delivery(f"1-{i}", 0, audit("token.issued", subject=f"s{i}")) for i in range(50)]
    engine = create_engine(db_url)
    writer = AuditWriter(engine)
    await writer(batch)
    await writer(batch[10:30])
    await writer.close()
    await engine.dispose()
    rows = await _rows(db_url)
    assert len(rows) == 50
    assert sorted(str(r["id"]) for r in rows) == sorted(d.event.id for d in batch)


async def test_hostile_values_are_stored_not_refused(db_url: str) -> None:
    """NUL (which PostgreSQL text refuses) is stored as U+FFFD; over-long names are cut to the column."""
    event = audit("login.failed", subject="al\x00ice" + "x" * 500, client_id="c" * 300, reason="r\x00")
    engine = create_engine(db_url)
    writer = AuditWriter(engine)
    await writer([Delivery("1-0", 0, event)])
    await writer.close()
    await engine.dispose()
    (row,) = await _rows(db_url)
    assert row["subject"] == ("al\ufffdice" + "x" * 500)[:256]
    assert row["client_id"] == "c" * 128
    assert row["reason"] == "r\ufffd"


async def test_an_id_holding_nul_is_stored_marked(db_url: str) -> None:
    """As the other text columns: PostgreSQL refused the row ("invalid byte sequence ... 0x00") five
    times, then it went to the dead-letter stream, the partition waiting meanwhile."""
    event = audit("token.issued", subject="s")
    engine = create_engine(db_url)
    writer = AuditWriter(engine)
    forged = Delivery("1-0", 0, msgspec.structs.replace(event, id="a\x00b"))
    await writer([forged])
    await writer([forged])  # still idempotent
    await writer.close()
    await engine.dispose()
    assert [r["id"] for r in await _rows(db_url)] == ["a\ufffdb"]


async def test_an_unreachable_database_is_transient() -> None:
    """The consumer retries a TransientError without counting it toward the dead-letter stream."""
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    with pytest.raises(TransientError):
        await AuditWriter(engine)([Delivery("1-0", 0, audit("token.issued"))])
    await engine.dispose()
