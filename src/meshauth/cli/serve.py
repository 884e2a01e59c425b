"""``meshauth serve``: run one service in the foreground (what a Kubernetes container runs)."""

from __future__ import annotations

import typer

from meshauth.config_load import ConfigError, load_settings
from meshauth.db import migrate
from meshauth.granian_server import Interface, check_port_free, serve
from meshauth.redis_client import resolve_redis_url

app = typer.Typer(help="Run one service in the foreground.", no_args_is_help=True)

MIGRATE = typer.Option(True, "--migrate/--no-migrate", help="Apply migrations first.")
INTERFACE = typer.Option("rsgi", help="granian interface: rsgi (faster) or asgi.")
# The auth service has one interface, ASGI. ext_authz vouches for a request that another service then
# reads, so the gate must see every header line; under RSGI granian drops header values that are not
# visible ASCII (it answered "wontfix" upstream): two Authorization lines, one of them with a byte
# ≥ 0x80, would look like one. ASGI passes raw bytes. RSGI measured 7–12 % more peak req/s (no change
# in p95): not worth a second ext_authz implementation that is blind to such lines. The option stays
# so that scripts passing ``--interface asgi`` keep working; ``rsgi`` is refused with the reason.
AUTH_INTERFACE = typer.Option("asgi", help="granian interface: asgi (the only one the auth service serves).")
AUTH_RSGI_REFUSED = (
    "the auth service is served over ASGI only: under RSGI granian hides header values that are not"
    " visible ASCII, which ext_authz must see (use --interface asgi, the default)"
)


@app.command("auth")
def auth(migrate_db: bool = MIGRATE, interface: str = AUTH_INTERFACE) -> None:
    """The auth service: OAuth 2.0 endpoints, sessions, Envoy ext_authz (HTTP here, gRPC on grpc_port)."""
    if interface == "rsgi":
        raise typer.BadParameter(AUTH_RSGI_REFUSED, param_hint="--interface")
    if interface != "asgi":
        raise typer.BadParameter(f"interface must be asgi, not {interface!r}", param_hint="--interface")
    _serve("auth", migrate_db, "asgi")


@app.command("policy")
def policy(migrate_db: bool = MIGRATE, interface: str = INTERFACE) -> None:
    """The policy decision service: Cedar policy stores behind the OpenID AuthZEN API."""
    _serve("policy", migrate_db, interface)


def _serve(service: str, migrate_db: bool, interface: str) -> None:
    if interface not in ("rsgi", "asgi"):
        raise typer.BadParameter(f"interface must be rsgi or asgi, not {interface!r}")
    chosen: Interface = "rsgi" if interface == "rsgi" else "asgi"
    settings = load_settings()
    if service == "auth" and resolve_redis_url(settings) is None:
        # Checked here, before granian starts: in a worker the same lack is a traceback and a crash loop.
        raise ConfigError(
            [
                "meshauth: configuration error: REDIS_URL is unset: meshauth serve auth needs REDIS_URL"
                " (`meshauth up` starts an embedded Valkey)"
            ]
        )
    if migrate_db:
        migrate(settings.sqlalchemy_url)
    if service == "auth":
        host, port, workers = settings.auth_host, settings.auth_port, settings.auth_workers
        # Each worker binds the gRPC port itself with SO_REUSEPORT (extauthz_grpc), so a port another
        # server holds would be shared as silently as the HTTP one (granian_server.check_port_free).
        check_port_free(host, settings.grpc_port, "MESHAUTH_GRPC_PORT")
    else:
        host, port, workers = settings.policy_host, settings.policy_port, settings.policy_workers
    serve(
        f"meshauth.{service}.app:create_app",
        host=host,
        port=port,
        workers=workers,
        interface=chosen,
        port_setting=f"MESHAUTH_{service.upper()}_PORT",
    )
