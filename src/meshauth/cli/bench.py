"""``meshauth bench``: the benchmark harness (service on core 0, load generator on core 1)."""

from __future__ import annotations

from pathlib import Path

import typer

from meshauth.bench.results import save

app = typer.Typer(
    help="Benchmarks. Without a command: the harness (bench/REPORT.md, plots, bench/results/<timestamp>.json);"
    " with one, that benchmark in detail (results in bench/results/, a table to stdout)."
)


@app.callback(invoke_without_command=True)
def harness(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="Fewer rates, shorter runs: under 2 minutes."),
    out: Path = typer.Option(Path("bench"), help="Where REPORT.md, the plots and results/<timestamp>.json go."),
    install_tools: bool = typer.Option(
        False, "--install-tools", help="Missing wrk/h2load: apt-get install them (as root, where apt-get exists)."
    ),
) -> None:
    """Without a subcommand: the whole harness (issue 13): every scenario, bench/REPORT.md, plots, JSON."""
    if ctx.invoked_subcommand is not None:
        return
    from meshauth.bench.harness import main

    raise typer.Exit(main(quick=quick, out_dir=out, install_tools=install_tools))


@app.command("auth")
def auth(
    rate: int = typer.Option(3000, help="Offered request rate for the latency runs (req/s)."),
    seconds: int = typer.Option(10, help="Duration of each run."),
    connections: int = typer.Option(30, help="Paced wrk connections sharing the offered rate."),
    authz: bool = typer.Option(
        False, "--authz", help="Authz mode instead: floor, authn, authz warm and cold (policy service asked)."
    ),
    warm_rounds: int = typer.Option(
        0,
        "--warm-rounds",
        min=0,
        help="With --authz: only authn against authz warm, alternated this many rounds (ratio median and spread).",
    ),
    audit_compare: bool = typer.Option(
        False, "--audit-compare", help="Only compare the warm gate with auditing on and off (issue 12)."
    ),
) -> None:
    """ext_authz HTTP check: warm, cache off, and a trivial app as the floor, at a fixed rate."""
    if authz and warm_rounds:
        from meshauth.bench import authz_warm

        warm_result = authz_warm.run(rate=rate, seconds=seconds, connections=connections, rounds=warm_rounds)
        save("authz-warm", warm_result)
        typer.echo(authz_warm.report(warm_result))
        return
    if authz:
        from meshauth.bench import authz as authz_bench

        authz_result = authz_bench.run(rate=rate, seconds=seconds, connections=connections)
        save("authz", authz_result)
        typer.echo(authz_bench.report(authz_result))
        return
    if audit_compare:
        from meshauth.bench import audit_gate

        compared = audit_gate.run(rate=rate, seconds=seconds, connections=connections)
        save("auth-audit", compared)
        typer.echo(audit_gate.report(compared))
        return
    from meshauth.bench import auth as bench

    result = bench.run(rate=rate, seconds=seconds, connections=connections)
    save("auth", result)
    typer.echo(bench.report(result))


@app.command("bus")
def bus(
    rate: int = typer.Option(25_000, help="Offered publish rate of the sustained phase (events/s)."),
    seconds: int = typer.Option(20, help="Duration of the sustained phase."),
    burst: int = typer.Option(200_000, help="Events published at once in the burst phase."),
    workers: int = typer.Option(1, help="`meshauth worker audit` processes."),
    partitions: int = typer.Option(4, help="Stream partitions."),
    postgres: str | None = typer.Option(None, help="A PostgreSQL URL to create the benchmark database beside."),
) -> None:
    """Message bus end to end: publish → audit worker → committed audit_log rows (issue 12)."""
    from meshauth.bench import bus as bench

    result = bench.run(
        rate=rate, seconds=seconds, burst=burst, workers=workers, partitions=partitions, postgres=postgres
    )
    save("bus", result)
    typer.echo(bench.report(result))


@app.command("policy", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def policy(ctx: typer.Context) -> None:
    """Policy decision service: single and batched AuthZEN evaluations (see `python -m meshauth.bench.policy -h`)."""
    from meshauth.bench import policy as bench

    bench.main(list(ctx.args))


@app.command("import")
def bulk_import(
    users: int = typer.Option(100_000, help="Users with pre-hashed (argon2id PHC) passwords."),
    plain: int = typer.Option(2_000, help="Users with plain passwords, hashed at the configured cost."),
    postgres_url: str = typer.Option("", help="Also import the PHC users into this PostgreSQL database (emptied)."),
) -> None:
    """Bulk user import through `meshauth admin users import` (issue 11)."""
    from meshauth.bench import bulk_import as bench

    result = bench.run(users=users, plain=plain, postgres_url=postgres_url or None)
    save("import", result)
    typer.echo(bench.report(result))
