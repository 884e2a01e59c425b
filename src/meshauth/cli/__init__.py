"""The ``meshauth`` command: one typer app whose sub-commands live one module each."""

from __future__ import annotations

import typer

from meshauth.cli import admin, bench, db, policy, serve, up

app = typer.Typer(
    name="meshauth",
    help="Authentication and authorization for services in a Kubernetes + Istio mesh.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(admin.app, name="admin")
app.add_typer(bench.app, name="bench")
app.add_typer(db.app, name="db")
app.add_typer(policy.app, name="policy")
app.add_typer(policy.entities_app, name="entities")
app.add_typer(serve.app, name="serve")
app.command("up")(up.up)


def main() -> None:
    app()
