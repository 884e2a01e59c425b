"""The ``meshauth`` command: one typer app whose sub-commands live one module each."""

from __future__ import annotations

import os
import socket
import sys

import typer
from sqlalchemy.exc import DBAPIError

from meshauth.cli import admin, audit, bench, bus, config, db, policy, serve, top, up, worker
from meshauth.config_load import ConfigError, load_settings

# Usage errors exit 2 (click's convention); a configuration error is one too.
CONFIG_ERROR_STATUS = 2

app = typer.Typer(
    name="meshauth",
    help="Authentication and authorization for services in a Kubernetes + Istio mesh.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _check_configuration(ctx: typer.Context) -> None:
    # Every command checks the configuration before it acts (no half-created var/, no server started
    # and then torn down); `config` reports problems itself, next to the values.
    if ctx.invoked_subcommand != "config":
        load_settings()


app.add_typer(admin.app, name="admin")
app.add_typer(audit.app, name="audit")
app.add_typer(bus.app, name="bus")
app.add_typer(bench.app, name="bench")
app.add_typer(config.app, name="config")
app.add_typer(db.app, name="db")
app.add_typer(policy.app, name="policy")
app.add_typer(policy.entities_app, name="entities")
app.add_typer(serve.app, name="serve")
app.add_typer(worker.app, name="worker")
app.command("up")(up.up)
app.command("top")(top.top)


def main() -> None:
    # The one place configuration errors are caught: one line per problem, no traceback, exit 2.
    # A database that cannot be reached or refuses the login is an operator's problem too (it is down, or
    # DATABASE_URL names the wrong one): one line with its reason, exit 1, instead of a 200-line traceback
    # from alembic; so is a file-system path that cannot be used. Only these: any other exception is a bug
    # whose traceback is wanted.
    try:
        app()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        sys.exit(CONFIG_ERROR_STATUS)
    except DBAPIError as exc:
        # The driver's own message, first line (later ones are DETAIL/HINT; str(exc) would add the SQL).
        reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        print(f"meshauth: database error: {reason}", file=sys.stderr)
        sys.exit(1)
    except (ConnectionError, TimeoutError, socket.gaierror) as exc:
        # asyncpg raises these unwrapped when no server answers; the message names the address tried.
        reason = exc.strerror or str(exc)
        if (exc.errno or 0) > 0 and exc.strerror:  # "Connect call failed (…)" says neither refused nor timed out
            reason = f"{os.strerror(exc.errno or 0)} ({exc.strerror})"
        print(f"meshauth: cannot connect to the database (DATABASE_URL): {reason}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        # A path the operator named that cannot be used: var_dir read-only, on a full disk, under a file.
        if exc.filename is None:
            raise
        print(f"meshauth: error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        sys.exit(1)
