"""``meshauth admin``: users, clients and signing keys, straight against the database."""

from __future__ import annotations

import typer

app = typer.Typer(help="Users, clients and signing keys.", no_args_is_help=True)
