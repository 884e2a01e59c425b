"""``meshauth config``: the effective configuration and where each value came from."""

from __future__ import annotations

import typer

from meshauth.config_report import check as check_config

app = typer.Typer(help="The configuration: effective values and their sources.", no_args_is_help=True)

INVALID_STATUS = 2


@app.command("check")
def check() -> None:
    """Print every setting, its effective value (secrets masked) and its source; exit 2 if any is invalid."""
    report = check_config()
    width = max(len(row.name) for row in report.rows) + 2
    value_width = min(max(len(row.value) for row in report.rows), 60) + 2
    typer.echo(f"{'setting':<{width}}{'value':<{value_width}}source")
    for row in report.rows:
        mark = "   <- invalid" if row.invalid else ""
        typer.echo(f"{row.name:<{width}}{row.value:<{value_width}}{row.origin.describe()}{mark}")
    for variable in report.unknown_variables:
        typer.echo(f"meshauth: warning: {variable} is set but names no setting; it is ignored", err=True)
    for problem in report.problems:
        typer.echo(problem, err=True)
    if report.problems:
        raise typer.Exit(INVALID_STATUS)
    typer.echo("configuration is valid")
