"""The system of record: SQLAlchemy 2 (async) tables and Alembic migrations, SQLite or PostgreSQL."""

from meshauth.db.engine import create_engine, migrate
from meshauth.db.tables import metadata

__all__ = ["create_engine", "metadata", "migrate"]
