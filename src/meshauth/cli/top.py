"""``meshauth top``: a live view of the running services, from their ``/metrics`` (80×24 terminal).

Every second it scrapes each target and shows what changed since the previous scrape: requests/s
and latency percentiles (from histogram buckets), per target and for the busiest endpoints; cache
hit rates per cache and level; decisions per call to the policy service; breaker states; stream lag.
"–" marks a figure with no metric behind it (yet). A target that cannot be read is an error row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from meshauth.config_load import load_settings
from meshauth.local.replicas import MAX_REPLICAS, plan
from meshauth.observability.scrape import Samples, ScrapeError, buckets, fetch, quantile, rate, window, without

REQUESTS = "meshauth_http_request_duration_seconds"
DECISION_ENDPOINTS = (
    "/access/v1/evaluation",
    "/access/v1/evaluations",
    "/stores/{store}/access/v1/evaluation",
    "/stores/{store}/access/v1/evaluations",
)
# (shown name, counter, label holding hit/miss, extra label to split by)
CACHES = (
    ("auth jwt", "meshauth_jwt_cache_total", "result", None),
    ("policy index", "meshauth_policy_index_cache_total", "outcome", None),
    ("client", "meshauth_client_cache_total", "result", "level"),
)
BREAKER_STATES = {0.0: "closed", 1.0: "half-open", 2.0: "open"}
# Lines, for an 80×24 terminal: header 1, targets 2+4+1, errors 2, endpoints 2+5, summary 4 = 21.
MAX_TARGET_ROWS = 4
MAX_ERROR_LINES = 2
MAX_ENDPOINT_ROWS = 5
DASH = "–"
HANDLED = "meshauth_bus_handled_total"

URL = typer.Option(None, "--url", help="A /metrics address to scrape (repeatable). Default: the local stack's.")
ONCE = typer.Option(False, "--once", help="Print one frame (two scrapes one interval apart) and exit.")
INTERVAL = typer.Option(1.0, "--interval", min=0.05, max=60.0, help="Seconds between scrapes.")
AUTH_REPLICAS = typer.Option(1, "--auth-replicas", min=1, max=MAX_REPLICAS, help="As given to meshauth up.")
POLICY_REPLICAS = typer.Option(1, "--policy-replicas", min=1, max=MAX_REPLICAS, help="As given to meshauth up.")
WIDTH = typer.Option(None, "--width", min=40, help="Render for this many columns (default: the terminal's).")


@dataclass
class Target:
    url: str
    now: Samples | None = None
    before: Samples | None = None
    error: str | None = None


def default_urls(auth_replicas: int = 1, policy_replicas: int = 1) -> list[str]:
    """The local stack's services (``meshauth up [--auth-replicas N --policy-replicas M]``) and bus workers."""
    s = load_settings()
    topology = plan(s, auth_replicas=auth_replicas, policy_replicas=policy_replicas)
    served = [(r.host, r.port) for r in (*topology.auth, *topology.policy)]
    workers = (s.audit_worker_metrics_port, s.analytics_worker_metrics_port) if s.audit_enabled else ()
    return [f"http://{_local(h)}:{p}/metrics" for h, p in served + [(s.worker_metrics_host, p) for p in workers if p]]


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104 - a listen address, read


def scrape_all(targets: Sequence[Target], pool: ThreadPoolExecutor, timeout: float) -> None:
    def one(t: Target) -> None:
        try:
            samples = fetch(t.url, timeout=timeout)
        except ScrapeError as exc:
            t.error, t.now, t.before = str(exc)[:200], None, None
            return
        t.before, t.now, t.error = t.now, samples, None

    list(pool.map(one, targets))


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    ms = seconds * 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.0f}"


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return DASH if value is None else fmt.format(value)


def _served(samples: Samples, **labels: str) -> dict[float, float]:
    """Request buckets, less the scrapes of ``/metrics`` (this dashboard's own requests)."""
    if "endpoint" in labels:
        return buckets(samples, REQUESTS, **labels)
    return without(buckets(samples, REQUESTS, **labels), buckets(samples, REQUESTS, endpoint="/metrics", **labels))


def _percentiles(now: Samples, before: Samples | None, **labels: str) -> tuple[str, str, str]:
    counts = window(_served(now, **labels), _served(before, **labels) if before else None)
    return _ms(quantile(0.5, counts)), _ms(quantile(0.95, counts)), _ms(quantile(0.99, counts))


def _requests_rate(now: Samples, before: Samples | None, **labels: str) -> float | None:
    r = rate(now, before, REQUESTS + "_count", **labels)
    scrapes = rate(now, before, REQUESTS + "_count", endpoint="/metrics", **labels)
    return None if r is None else r - (scrapes or 0.0)


def _table(*columns: tuple[str, str, int | None]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), expand=False)
    for name, justify, width in columns:
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis", max_width=width)  # type: ignore[arg-type]
    return table


def targets_table(targets: Sequence[Target]) -> Table:
    table = _table(
        ("target", "left", 30),
        ("req/s", "right", 9),
        ("p50 ms", "right", 7),
        ("p95 ms", "right", 7),
        ("p99 ms", "right", 7),
        ("5xx/s", "right", 7),
    )
    for t in targets[:MAX_TARGET_ROWS]:
        name = t.url.removeprefix("http://").removesuffix("/metrics")
        if t.now is None:
            table.add_row(Text(name, style="red"), Text("down", style="red"), DASH, DASH, DASH, DASH)
            continue
        p50, p95, p99 = _percentiles(t.now, t.before)
        table.add_row(
            name,
            _num(_requests_rate(t.now, t.before)),
            p50,
            p95,
            p99,
            _num(rate(t.now, t.before, REQUESTS + "_count", status="5xx")),
        )
    if len(targets) > MAX_TARGET_ROWS:
        table.add_row(f"… {len(targets) - MAX_TARGET_ROWS} more", "", "", "", "", "")
    return table


def endpoints_table(targets: Sequence[Target]) -> Table:
    rows: dict[str, tuple[float, tuple[str, str, str]]] = {}
    for t in targets:
        if t.now is None:
            continue
        for endpoint in {dict(ls).get("endpoint", "") for ls in t.now.series(REQUESTS + "_count")}:
            if endpoint == "/metrics":
                continue
            r = rate(t.now, t.before, REQUESTS + "_count", endpoint=endpoint)
            count = t.now.total(REQUESTS + "_count", endpoint=endpoint)
            rows[f"{endpoint}"] = (r if r is not None else count, _percentiles(t.now, t.before, endpoint=endpoint))
    table = _table(
        ("endpoint (busiest)", "left", 38),
        ("req/s", "right", 9),
        ("p50 ms", "right", 7),
        ("p95 ms", "right", 7),
        ("p99 ms", "right", 7),
    )
    busiest = sorted(rows.items(), key=lambda kv: -kv[1][0])[:MAX_ENDPOINT_ROWS]
    for endpoint, (r, (p50, p95, p99)) in busiest:
        table.add_row(endpoint, _num(r), p50, p95, p99)
    if not busiest:
        table.add_row(DASH, DASH, DASH, DASH, DASH)
    return table


def _hit_rate(now: Samples, before: Samples | None, name: str, label: str, **labels: str) -> str:
    def counts(s: Samples) -> tuple[float, float]:
        return s.total(name, **{label: "hit"}, **labels), s.total(name, **{label: "miss"}, **labels)

    hits, misses = counts(now)
    if before is not None:
        h0, m0 = counts(before)
        if hits >= h0 and misses >= m0 and (hits - h0) + (misses - m0) > 0:
            hits, misses = hits - h0, misses - m0
    return DASH if hits + misses == 0 else f"{100 * hits / (hits + misses):.1f}%"


def summary(targets: Sequence[Target]) -> list[Text]:
    live = [t for t in targets if t.now is not None]
    caches: list[str] = []
    for shown, name, label, split in CACHES:
        scraped = [t for t in live if t.now is not None and t.now.has(name)]
        if not scraped:
            caches.append(f"{shown} {DASH}")
            continue
        t = scraped[0]
        assert t.now is not None
        levels = sorted({dict(ls).get(split, "") for ls in t.now.series(name)}) if split else [""]
        for level in levels:
            extra = {split: level} if split else {}
            caches.append(f"{shown}{' ' + level if level else ''} {_hit_rate(t.now, t.before, name, label, **extra)}")
    decided = requests = None
    for t in live:
        assert t.now is not None
        d = rate(t.now, t.before, "meshauth_policy_decisions_total")
        r = sum(rate(t.now, t.before, REQUESTS + "_count", endpoint=e) or 0.0 for e in DECISION_ENDPOINTS)
        if d is not None and t.now.has("meshauth_policy_decisions_total"):
            decided, requests = (decided or 0.0) + d, (requests or 0.0) + r
    per_call = decided / requests if decided is not None and requests else None
    worst: dict[str, float] = {}
    for t in live:
        assert t.now is not None
        for ls, v in t.now.series("meshauth_client_breaker_state").items():
            store = dict(ls).get("store", "?")
            worst[store] = max(v, worst.get(store, v))
    breakers = [f"{store} {BREAKER_STATES.get(v, str(v))}" for store, v in sorted(worst.items(), key=lambda kv: -kv[1])]
    lag = [
        v for t in live if t.now is not None for n, s in t.now.values.items() if "stream_lag" in n for v in s.values()
    ]
    connected = [
        v for t in live if t.now is not None for v in t.now.series("meshauth_invalidation_stream_connected").values()
    ]
    stream = "connected" if connected and min(connected) >= 1 else ("disconnected" if connected else DASH)
    handled = [rate(t.now, t.before, HANDLED) for t in live if t.now is not None and t.now.has(HANDLED)]
    lag_shown = _num(max(lag), "{:.0f}") if lag else DASH
    handled_rate = None if not handled or None in handled else sum(h or 0.0 for h in handled)
    return [
        _line("cache hits  ", "  ".join(caches)),
        _line("policy      ", f"decisions/s {_num(decided)}  decisions per call {_num(per_call)}"),
        _line("breakers    ", "  ".join(breakers) or DASH),
        _line("stream      ", f"lag {lag_shown}  handled/s {_num(handled_rate, '{:.0f}')}  invalidations {stream}"),
    ]


def _line(title: str, body: str) -> Text:
    """One summary line, cut (never wrapped) at the console's width."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(title, style="bold")
    text.append(body)
    return text


def errors(targets: Sequence[Target], width: int) -> Text:
    """One line per target that could not be read (at most ``MAX_TARGET_ROWS``), cut to ``width``."""
    text = Text(style="red", no_wrap=True, overflow="ellipsis")
    failed = [t for t in targets if t.now is None][:MAX_ERROR_LINES]
    for n, t in enumerate(failed):
        line = f"{t.url.removeprefix('http://')}: {t.error or 'not scraped yet'}"
        text.append(_printable(line)[: width - 1] + ("\n" if n < len(failed) - 1 else ""))
    return text


def _printable(line: str) -> str:
    """A target's error as one line of text (its reason may come from the network)."""
    return "".join(c if c.isprintable() else "?" for c in line)


def frame(targets: Sequence[Target], interval: float, width: int = 80) -> Group:
    header = Text(f"meshauth top  {time.strftime('%H:%M:%S')}  every {interval:g}s  (Ctrl-C quits)", style="bold")
    parts: list[RenderableType] = [header, targets_table(targets)]
    if any(t.now is None for t in targets):
        parts.append(errors(targets, width))
    return Group(*parts, endpoints_table(targets), *summary(targets))


def top(
    url: list[str] | None = URL,
    once: bool = ONCE,
    interval: float = INTERVAL,
    auth_replicas: int = AUTH_REPLICAS,
    policy_replicas: int = POLICY_REPLICAS,
    width: int | None = WIDTH,
) -> None:
    """Live dashboard of the running services (requests/s, latency percentiles, cache hit rates, …)."""
    try:
        targets = [Target(u) for u in (url or default_urls(auth_replicas, policy_replicas))]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console = Console(width=width) if width else Console()
    timeout = min(1.0, interval)
    with ThreadPoolExecutor(max(1, min(8, len(targets)))) as pool:
        scrape_all(targets, pool, timeout)
        if once:
            time.sleep(interval)
            scrape_all(targets, pool, timeout)
            console.print(frame(targets, interval, console.width))
            return
        try:
            with Live(frame(targets, interval, console.width), console=console, auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    scrape_all(targets, pool, timeout)
                    live.update(frame(targets, interval, console.width), refresh=True)
        except KeyboardInterrupt:
            return
