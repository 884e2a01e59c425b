"""``meshauth policy`` and ``meshauth entities``: policy stores from the command line."""

from __future__ import annotations

import typer

app = typer.Typer(help="Cedar policy stores: push, list versions, activate.", no_args_is_help=True)
entities_app = typer.Typer(help="Entities of a policy store.", no_args_is_help=True)
