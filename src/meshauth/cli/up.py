"""``meshauth up``: the whole local stack in the foreground, with a walkthrough that works as printed."""

from __future__ import annotations

import os
import shlex
import signal
from types import FrameType

import typer

from meshauth.admin_token import ensure_admin_token
from meshauth.config import load_settings
from meshauth.local.bootstrap import bootstrap
from meshauth.local.stack import Stack, child_env, policy_available
from meshauth.local.walkthrough import walkthrough

BUS_WORKERS = ("audit", "analytics")


def up(
    demo: bool = typer.Option(True, "--demo/--no-demo", help="Create the demo client and user."),
) -> None:
    """Start Valkey (embedded unless REDIS_URL), the auth and policy services, and print a walkthrough."""
    # SIGTERM while starting ends up like Ctrl-C does: through the clean-up below.
    signal.signal(signal.SIGTERM, _interrupt)
    # The local stack serves plain HTTP on loopback, where a Secure cookie would never be sent back.
    os.environ.setdefault("MESHAUTH_COOKIE_SECURE", "false")
    settings = load_settings()
    if "MESHAUTH_ISSUER" not in os.environ:
        # Metadata and tokens should name the address the stack really serves on.
        os.environ["MESHAUTH_ISSUER"] = f"http://{settings.auth_host}:{settings.auth_port}"
        settings = load_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    _token, token_file = ensure_admin_token(settings)
    demo_info = bootstrap(settings, demo=demo)
    stack = Stack(settings, env={})
    code = 1
    try:
        redis_url = stack.start_redis()
        stack.env = child_env(settings, redis_url)
        with_policy = policy_available()
        stack.spawn("auth", "serve", "auth", "--no-migrate")
        if with_policy:
            stack.spawn("policy", "serve", "policy", "--no-migrate")
        workers = BUS_WORKERS if settings.audit_enabled else ()
        for worker in workers:  # the message bus's consumers (audit_log, analytics); supervised like the services
            stack.spawn(f"{worker} worker", "worker", worker, "--no-migrate")
        stack.wait_ready("auth", f"http://{settings.auth_host}:{settings.auth_port}/healthz")
        if with_policy:
            stack.wait_ready("policy", f"http://{settings.policy_host}:{settings.policy_port}/healthz")
        auth = f"http://{settings.auth_host}:{settings.auth_port}"
        typer.echo("")
        typer.echo("meshauth is up")
        typer.echo(f"  auth service     {auth}   (OAuth 2.0, sessions, ext_authz under /ext_authz/)")
        typer.echo(f"  ext_authz gRPC   {settings.auth_host}:{settings.grpc_port}")
        if with_policy:
            typer.echo(f"  policy service   http://{settings.policy_host}:{settings.policy_port}   (AuthZEN)")
        typer.echo(f"  redis            {redis_url}{'' if settings.redis_url else '   (embedded Valkey)'}")
        typer.echo(f"  database         {settings.sqlalchemy_url}")
        typer.echo(f"  metrics          {auth}/metrics")
        if workers:
            typer.echo(f"  bus workers      {', '.join(workers)}   (meshauth bus status; meshauth audit tail)")
        if token_file is not None:
            typer.echo(f"  admin token      in {token_file.resolve()} (mode 0600)")
        else:
            typer.echo("  admin token      from MESHAUTH_ADMIN_TOKEN")
        typer.echo("")
        if demo_info is not None:
            token_expr = (
                f"$(cat {shlex.quote(str(token_file.resolve()))})"
                if token_file is not None
                else "$MESHAUTH_ADMIN_TOKEN"
            )
            typer.echo(walkthrough(settings, demo_info, policy=with_policy, admin_token=token_expr))
        typer.echo("\nPress Ctrl-C to stop.", nl=True)
        code = stack.run_until_stopped()
    except RuntimeError as exc:
        typer.echo(f"meshauth up: {exc}", err=True)
    except KeyboardInterrupt:
        # Ctrl-C before the stack was up: the children are in their own process groups (see
        # local/children.py), so they are stopped below rather than by the terminal.
        code = 130
    finally:
        stack.stop()
    raise typer.Exit(code)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt
