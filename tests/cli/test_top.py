"""``meshauth top``: scrapes real services, fits an 80×24 terminal, and shows unreadable targets as rows."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from rich.console import Console

from meshauth.bus.metrics import STREAM_LAG
from meshauth.cli.top import Target, default_urls, frame
from meshauth.config_load import load_settings
from meshauth.observability.scrape import Samples, fetch
from tests.cli.conftest import meshauth
from tests.served import ADMIN, Served, call, free_port, serve

WIDTH, HEIGHT = 80, 24


def rendered(targets: list[Target]) -> list[str]:
    console = Console(width=WIDTH, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(frame(targets, 1.0, WIDTH))
    console.file.close()
    return console.export_text().rstrip("\n").splitlines()


def fits(lines: list[str]) -> None:
    assert len(lines) <= HEIGHT, "\n".join(lines)
    assert all(len(line) <= WIDTH for line in lines), "\n".join(lines)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[tuple[Served, Served]]:
    with (
        serve("auth", "asgi", tmp_path_factory.mktemp("auth"), valkey_url, MESHAUTH_AUTH_WORKERS="2") as auth,
        serve("policy", "rsgi", tmp_path_factory.mktemp("policy"), valkey_url) as policy,
    ):
        yield auth, policy


def test_real_metrics_of_auth_and_policy_are_parsed_and_shown(stack: tuple[Served, Served]) -> None:
    """Traffic on both services shows up as rates and percentiles in one 80×24 frame."""
    auth, policy = stack
    targets = [Target(auth.url + "/metrics"), Target(policy.url + "/metrics")]
    for t in targets:
        t.now = fetch(t.url)
    body = json.dumps(
        {"subject": {"type": "U", "id": "u"}, "action": {"name": "v"}, "resource": {"type": "D", "id": "d"}}
    )
    for _ in range(20):
        assert call("GET", auth.url + "/ext_authz/orders/1")[0] == 401
        assert call("POST", policy.url + "/access/v1/evaluation", body=body.encode())[0] == 200
    # Each worker publishes its invalidation-stream state once a second and on the scrapes it answers:
    # until both workers have, the merged gauge (livemin) still reads a worker's initial 0.
    deadline = time.monotonic() + 10
    while True:
        for t in targets:
            t.before, t.now = t.now, fetch(t.url)
        assert targets[0].now is not None and targets[1].now is not None
        connected = targets[0].now.series("meshauth_invalidation_stream_connected").values()
        if (connected and min(connected) == 1) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert targets[0].now.total("meshauth_gate_decisions_total", outcome="deny") >= 20
    assert targets[1].now.total("meshauth_policy_decisions_total") >= 20
    assert targets[1].now.has("meshauth_policy_decision_duration_seconds_count")
    assert targets[0].now.has("meshauth_db_connections_in_use")
    lines = rendered(targets)
    fits(lines)
    text = "\n".join(lines)
    assert "/ext_authz" in text
    assert "/access/v1/evaluation" in text
    assert "decisions per call 1.0" in text
    assert "invalidations connected" in text


def test_admin_traffic_keeps_route_templates(stack: tuple[Served, Served]) -> None:
    auth, _ = stack
    call("DELETE", auth.url + "/admin/users/nobody-1", headers={"authorization": f"Bearer {ADMIN}"})
    samples = fetch(auth.url + "/metrics")
    assert samples.total("meshauth_http_request_duration_seconds_count", endpoint="/admin/users/{username}") >= 1
    assert not samples.series("meshauth_http_request_duration_seconds_count", endpoint="/admin/users/nobody-1")


def test_an_unreachable_target_is_an_error_row_not_a_crash(tmp_path: Path) -> None:
    port = free_port()
    done = meshauth(
        tmp_path, "top", "--once", "--interval", "0.05", "--width", "80", "--url", f"http://127.0.0.1:{port}/metrics"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.rstrip("\n").splitlines()
    fits(lines)
    assert f"127.0.0.1:{port}" in done.stdout
    assert "down" in done.stdout
    assert "refused" in done.stdout.lower()


class _Hostile(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[dict[str, bytes]] = {
        "/huge": b"m 1\n" * (5 * 1024 * 1024 // 4),
        "/garbage": b"\xff\x00{{{\n\x1b[31mred\n" * 1000,
        "/many": b"".join(b'm{i="%d"} 1\n' % i for i in range(60_000)),
    }

    def do_GET(self) -> None:
        if self.path == "/error":
            self.send_error(500)
            return
        if self.path == "/slow":
            threading.Event().wait(3)
        body = self.bodies.get(self.path, b"")
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the reader stops at its limit
            self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hostile_metrics_are_error_rows(hostile: str) -> None:
    """Huge, garbage, too many samples, HTTP 500, no answer in time: each one an error row, frame intact."""
    reasons = {}
    targets = []
    for path in ("/huge", "/garbage", "/many", "/error", "/slow"):
        t = Target(hostile + path)
        try:
            t.now = fetch(t.url, timeout=0.5)
        except Exception as exc:
            t.error = str(exc)
        reasons[path] = t.error
        targets.append(t)
    assert "MiB" in str(reasons["/huge"])
    assert reasons["/garbage"] is not None
    assert "samples" in str(reasons["/many"])
    assert reasons["/error"] == "HTTP 500"
    assert "timed out" in str(reasons["/slow"])
    lines = rendered(targets)
    fits(lines)
    assert "\x1b" not in "\n".join(lines)


def test_a_busy_frame_still_fits_80_by_24() -> None:
    """Many targets, endpoints, cache levels and breakers: the frame is cut to fit, not wrapped."""

    def labels(**kv: str) -> frozenset[tuple[str, str]]:
        return frozenset(kv.items())

    values: dict[str, dict[frozenset[tuple[str, str]], float]] = {
        "meshauth_http_request_duration_seconds_bucket": {},
        "meshauth_http_request_duration_seconds_count": {},
        "meshauth_client_cache_total": {},
        "meshauth_client_breaker_state": {},
        "meshauth_bus_stream_lag": {labels(stream="x", group="y"): 12.0},
    }
    for i in range(40):
        endpoint = f"/stores/{{store}}/a/very/long/route/template/number/{i}"
        for le, n in (("0.001", 5.0), ("0.01", 9.0), ("+Inf", 10.0 + i)):
            values["meshauth_http_request_duration_seconds_bucket"][labels(endpoint=endpoint, le=le)] = n
        values["meshauth_http_request_duration_seconds_count"][labels(endpoint=endpoint)] = 10.0 + i
    for level in ("l1", "l2", "l3"):
        values["meshauth_client_cache_total"][labels(level=level, result="hit")] = 9.0
        values["meshauth_client_cache_total"][labels(level=level, result="miss")] = 1.0
    for store in range(20):
        values["meshauth_client_breaker_state"][labels(store=f"store-{store}")] = float(store % 3)
    targets = []
    for i in range(12):
        t = Target(f"http://10.0.0.{i}:8080/metrics" + "x" * 60 * (i % 2))
        if i % 3:
            t.now = Samples(values)
        else:
            t.error = "boom " * 50
        targets.append(t)
    lines = rendered(targets)
    fits(lines)
    text = "\n".join(lines)
    assert "client l1 90.0%" in text
    assert "lag 12" in text


def test_stream_lag_is_the_bus_gauges_largest() -> None:
    """The bus's own lag gauge (``bus.metrics.STREAM_LAG``) is what the stream line shows: the
    largest group's lag over every target."""
    name = STREAM_LAG._name
    by_group = {
        frozenset({("stream", "audit"), ("group", "audit")}): 7.0,
        frozenset({("stream", "audit"), ("group", "analytics")}): 3.0,
    }
    t = Target("http://127.0.0.1:1/metrics")
    t.now = Samples({name: by_group, "meshauth_bus_pending": {frozenset({("stream", "audit")}): 99.0}})
    stream_line = next(line for line in rendered([t]) if line.startswith("stream"))
    assert "lag 7 " in stream_line


def test_stream_line_shows_what_the_workers_handled_per_second() -> None:
    audit_group = frozenset({("stream", "audit"), ("group", "audit")})
    analytics_group = frozenset({("stream", "audit"), ("group", "analytics")})
    workers = [Target("http://127.0.0.1:1/metrics"), Target("http://127.0.0.1:2/metrics")]
    for t, group in zip(workers, (audit_group, analytics_group), strict=True):
        t.before = Samples({"meshauth_bus_handled_total": {group: 100.0}}, at=10.0)
        t.now = Samples({"meshauth_bus_handled_total": {group: 350.0}}, at=12.0)
    service = Target("http://127.0.0.1:3/metrics")  # no bus counter: not a worker, not counted as 0
    service.before, service.now = Samples({}, at=10.0), Samples({}, at=12.0)
    line = next(x for x in rendered([*workers, service]) if x.startswith("stream"))
    assert "handled/s 250 " in line  # 125/s for each group
    only_service = next(x for x in rendered([service]) if x.startswith("stream"))
    assert "handled/s – " in only_service


def test_the_default_targets_are_the_local_stacks_replicas(tmp_path: Path) -> None:
    """Without --url: every auth and policy replica ``meshauth up`` would start, and its two bus
    workers' ``/metrics``, from the settings."""
    s = load_settings()
    assert default_urls(auth_replicas=2, policy_replicas=1) == [
        f"http://127.0.0.1:{s.auth_port}/metrics",
        f"http://127.0.0.1:{s.auth_port + 1}/metrics",
        f"http://127.0.0.1:{s.policy_port}/metrics",
        f"http://127.0.0.1:{s.audit_worker_metrics_port}/metrics",
        f"http://127.0.0.1:{s.analytics_worker_metrics_port}/metrics",
    ]
    done = meshauth(tmp_path, "top", "--once", "--auth-replicas", "99")
    assert done.returncode == 2
    assert "--auth-replicas" in done.stderr
