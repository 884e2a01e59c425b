"""``meshauth up``: the whole local stack in the foreground, with a walkthrough that works as printed."""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import typer

from meshauth.admin_token import ensure_admin_token
from meshauth.config_display import mask_url
from meshauth.config_load import load_settings
from meshauth.local.bootstrap import bootstrap
from meshauth.local.replicas import MAX_REPLICAS, Replica, Topology, plan
from meshauth.local.stack import Stack, child_env, policy_available
from meshauth.local.walkthrough import walkthrough

BUS_WORKERS = ("audit", "analytics")


def up(
    demo: bool = typer.Option(True, "--demo/--no-demo", help="Create the demo client and user."),
    routes: Path | None = typer.Option(
        None,
        "--routes",
        help="Route table (YAML): the gate authorizes each request with the policy service too"
        " (sets MESHAUTH_ROUTES_FILE; e.g. examples/routes.yaml).",
    ),
    auth_replicas: int = typer.Option(
        1, "--auth-replicas", help=f"Auth service processes, on consecutive ports (1-{MAX_REPLICAS})."
    ),
    policy_replicas: int = typer.Option(
        1, "--policy-replicas", help=f"Policy service processes, on consecutive ports (1-{MAX_REPLICAS})."
    ),
) -> None:
    """Start Valkey (embedded unless REDIS_URL), the auth and policy services, and print a walkthrough."""
    # SIGTERM while starting ends up like Ctrl-C does: through the clean-up below.
    signal.signal(signal.SIGTERM, _interrupt)
    if routes is not None:
        # Absolute, so the services read the same file whatever their working directory; checked (with
        # the line of any problem) by load_settings below, before anything starts.
        os.environ["MESHAUTH_ROUTES_FILE"] = str(routes.resolve())
    # The local stack serves plain HTTP on loopback, where a Secure cookie would never be sent back.
    os.environ.setdefault("MESHAUTH_COOKIE_SECURE", "false")
    settings = load_settings()
    if "MESHAUTH_ISSUER" not in os.environ:
        # Metadata and tokens should name the address the stack really serves on.
        os.environ["MESHAUTH_ISSUER"] = f"http://{settings.auth_host}:{settings.auth_port}"
        settings = load_settings()
    try:
        topology = plan(settings, auth_replicas=auth_replicas, policy_replicas=policy_replicas)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    _token, token_file = ensure_admin_token(settings)
    demo_info = bootstrap(settings, demo=demo)
    stack = Stack(settings, env={})
    code = 1
    try:
        redis_url = stack.start_redis()
        stack.env = child_env(settings, redis_url)
        with_policy = policy_available()
        replicas = [*topology.auth, *(topology.policy if with_policy else ())]
        for replica in replicas:
            stack.spawn(replica.name, "serve", replica.service, "--no-migrate", env=_env_for(topology, replica))
        workers = BUS_WORKERS if settings.audit_enabled else ()
        for worker in workers:  # the message bus's consumers (audit_log, analytics); supervised like the services
            stack.spawn(f"{worker} worker", "worker", worker, "--no-migrate")
        for replica in replicas:
            stack.wait_ready(replica.name, replica.url)
        auth = topology.auth[0].url
        typer.echo("")
        typer.echo("meshauth is up")
        typer.echo(f"  auth service     {_ports(topology.auth)}   (OAuth 2.0, sessions, ext_authz under /ext_authz/)")
        grpc = [f"{r.host}:{r.grpc_port}" for r in topology.auth]
        typer.echo(f"  ext_authz gRPC   {grpc[0]}" + (f" … {grpc[-1]}" if len(grpc) > 1 else ""))
        if with_policy:
            typer.echo(f"  policy service   {_ports(topology.policy)}   (AuthZEN)")
        # Masked: this goes to a terminal, a CI log or a screen share; the URLs may carry passwords.
        typer.echo(f"  redis            {mask_url(redis_url)}{'' if settings.redis_url else '   (embedded Valkey)'}")
        typer.echo(f"  database         {mask_url(settings.sqlalchemy_url)}")
        typer.echo(f"  metrics          {auth}/metrics")
        if workers:
            typer.echo(f"  bus workers      {', '.join(workers)}   (meshauth bus status; meshauth audit tail)")
            ports = {"audit": settings.audit_worker_metrics_port, "analytics": settings.analytics_worker_metrics_port}
            shown = ", ".join(f"{w} :{ports[w]}" for w in workers if ports.get(w))
            if shown:  # each worker serves its own (meshauth top scrapes them too)
                typer.echo(f"  worker metrics   http://{settings.worker_metrics_host}:<port>/metrics   ({shown})")
        if settings.routes_file is not None:
            typer.echo(f"  authz mode       routes from {settings.routes_file}; the gate asks the policy service")
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
            typer.echo(
                walkthrough(
                    settings,
                    demo_info,
                    policy=with_policy,
                    admin_token=token_expr,
                    authz=settings.routes_file is not None,
                )
            )
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


def _env_for(topology: Topology, replica: Replica) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda shared: topology.child_env(replica, shared)


def _ports(replicas: tuple[Replica, ...]) -> str:
    """``http://127.0.0.1:8090``, or ``http://127.0.0.1:8090 … :8092 (3 replicas)``."""
    if len(replicas) == 1:
        return replicas[0].url
    return f"{replicas[0].url} … :{replicas[-1].port} ({len(replicas)} replicas)"


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt
