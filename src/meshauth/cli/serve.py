"""``meshauth serve``: run one service in the foreground (what a Kubernetes container runs)."""

from __future__ import annotations

import typer

from meshauth.config import load_settings
from meshauth.db import migrate
from meshauth.policy.server import FACTORY as POLICY_FACTORY
from meshauth.server import Interface, serve

app = typer.Typer(help="Run one service in the foreground.", no_args_is_help=True)


@app.command("auth")
def auth(
    migrate_db: bool = typer.Option(True, "--migrate/--no-migrate", help="Apply migrations first."),
    interface: str = typer.Option("rsgi", help="granian interface: rsgi (faster) or asgi."),
) -> None:
    """The auth service: OAuth 2.0 endpoints, sessions, Envoy ext_authz (HTTP here, gRPC on grpc_port)."""
    settings = load_settings()
    if migrate_db:
        migrate(settings.sqlalchemy_url)
    serve(
        "meshauth.auth.app:create_app",
        host=settings.auth_host,
        port=settings.auth_port,
        workers=settings.auth_workers,
        interface=_interface(interface),
    )


@app.command("policy")
def policy(
    migrate_db: bool = typer.Option(True, "--migrate/--no-migrate", help="Apply migrations first."),
    interface: str = typer.Option("rsgi", help="granian interface: rsgi (faster) or asgi."),
) -> None:
    """The policy decision service: Cedar policy stores behind the OpenID AuthZEN API."""
    settings = load_settings()
    if migrate_db:
        migrate(settings.sqlalchemy_url)
    serve(
        POLICY_FACTORY,
        host=settings.policy_host,
        port=settings.policy_port,
        workers=settings.policy_workers,
        interface=_interface(interface),
    )


def _interface(name: str) -> Interface:
    if name == "rsgi":
        return "rsgi"
    if name == "asgi":
        return "asgi"
    raise typer.BadParameter(f"interface must be rsgi or asgi, not {name!r}")
