"""``meshauth worker``: the message bus's consumers, one per command, in the foreground."""

from __future__ import annotations

import logging

import typer
import uvloop

from meshauth.analytics.store import AnalyticsWriter
from meshauth.audit.store import AuditWriter
from meshauth.bus.runner import run_worker
from meshauth.config import Settings
from meshauth.config_load import ConfigError, load_settings
from meshauth.db import migrate
from meshauth.redis_client import resolve_redis_url

app = typer.Typer(help="Run a message-bus worker in the foreground.", no_args_is_help=True)

MIGRATE = typer.Option(True, "--migrate/--no-migrate", help="Apply migrations first.")
METRICS_PORT = typer.Option(
    None,
    "--metrics-port",
    min=0,
    max=65535,
    help="Serve /metrics on this port (default: MESHAUTH_AUDIT_WORKER_METRICS_PORT 9102, resp."
    " MESHAUTH_ANALYTICS_WORKER_METRICS_PORT 9103, on MESHAUTH_WORKER_METRICS_HOST); 0: none.",
)


def _prepare(migrate_db: bool) -> tuple[Settings, str]:
    settings = load_settings()
    url = resolve_redis_url(settings)
    if url is None:
        raise ConfigError(
            ["meshauth: configuration error: REDIS_URL is unset: workers need REDIS_URL (`meshauth up` starts one)"]
        )
    if migrate_db:
        migrate(settings.sqlalchemy_url)
    # Warnings and errors only: under `meshauth up` this shares the terminal with the walkthrough.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return settings, url


@app.command("audit")
def audit(migrate_db: bool = MIGRATE, metrics_port: int | None = METRICS_PORT) -> None:
    """Store the audit stream's events in the audit_log table (batched, idempotent by event id)."""
    settings, url = _prepare(migrate_db)
    port = settings.audit_worker_metrics_port if metrics_port is None else metrics_port
    uvloop.run(run_worker(settings, url, "audit", AuditWriter, metrics_port=port))


@app.command("analytics")
def analytics(migrate_db: bool = MIGRATE, metrics_port: int | None = METRICS_PORT) -> None:
    """Keep per-minute decision aggregates (requests, allows, denies, p95 latency, cache hit rate)."""
    settings, url = _prepare(migrate_db)
    port = settings.analytics_worker_metrics_port if metrics_port is None else metrics_port
    uvloop.run(run_worker(settings, url, "analytics", AnalyticsWriter, metrics_port=port))
