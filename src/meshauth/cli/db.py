"""``meshauth db``: schema migrations."""

from __future__ import annotations

import typer
from alembic.util import CommandError

from meshauth.config_load import load_settings
from meshauth.db import migrate

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Alembic revision to reach.")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    settings = load_settings()
    try:
        migrate(settings.sqlalchemy_url, revision)
    except CommandError as exc:  # a revision that does not exist, or that the database is past
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"database at revision {revision}")
