"""Runs an app factory under granian (Rust HTTP server, uvloop): the lowest-overhead option measured here.

Two interfaces: ASGI, and granian's own RSGI, which reads request bodies natively and measured well
ahead of ASGI for body-reading apps (docs/performance.md). An app object may speak both.

Connection limits and timeouts (settings in ``config.py``, block "Transport"), and why
----------------------------------------------------------------------------------------
Measured against granian 2.8.9 (hyper 1.11, hyper-util 0.1.20), one worker, before this was set:
~2,050 TCP connections that send nothing made the port stop answering anyone until they closed.

- **What stopped answering.** granian admits connections through a semaphore of ``backpressure``
  permits per worker, held for the connection's whole life, idle or not; its default is
  ``backlog // workers`` = 2,048 here. Permit 2,049 is never granted, so the accept loop stops and
  new clients wait in the kernel's accept queue (another ``backlog``) until they time out.
- **Why idle sockets lived forever.** In ``http=auto`` (HTTP/1.1 and h2c on one port) hyper-util
  first reads a few bytes to tell the protocols apart, and that read has no timer
  (hyperium/hyper#3962, #3756): a peer that never sends a byte is held until it hangs up.
  Served as HTTP/1.1 only, hyper's ``header_read_timeout`` runs from the moment the connection is
  accepted, and since hyper 1.10 (hyperium/hyper#3828) again whenever a kept-alive connection goes
  idle after a response. So one timer closes a silent connection, an idle keep-alive connection,
  and a slowloris client (headers trickled in) alike.

The limits:

- ``http_mode`` = ``http1`` (default). Nothing in meshauth speaks h2c to these ports (the service
  client and the mesh sidecars use HTTP/1.1 keep-alive; FIELD-NOTES), and ``auto`` would re-open
  the silent-connection hole. ``auto`` stays available; with it only ``http_max_connections``
  bounds silent connections.
- ``http_header_read_timeout`` (20 s): a request's head must arrive within this from the
  connection's start or from the end of the previous response; it is therefore also the
  keep-alive idle timeout. Above aiohttp's 15 s client keep-alive, so pooled clients close first
  and never race a server-side close; mesh sidecars should idle out upstream connections sooner
  (DestinationRule ``connectionPool.http.idleTimeout``).
- ``http_body_read_timeout`` (30 s): hyper has no body timer, so our body readers
  (``meshauth.http``, ``meshauth.rsgi_bridge``, ``meshauth.policy.fast``) give the whole body this long
  and answer 408 after it.
- ``http_max_connections`` (10,000 per worker): the backpressure permits. Sized well above any
  honest client population (a few sidecar pools) and far above 2,300; an idle connection costs a
  file descriptor and ~3 KiB of worker RSS (measured). Capped at start to what the fd limit allows.

Measured after (one worker, loopback, shared 2-core machine): with 2,300 silent connections held,
``/healthz`` answers in 1–4 ms on both ports (before: no answer within 5 s, for as long as they
were held); with 9,000 held, 2–6 ms; all of them are closed 20 s after they were opened.
- ``http_backlog`` (4,096): the kernel's accept queue, i.e. connections waiting for a permit;
  Linux caps it at ``net.core.somaxconn`` (4,096 by default since 5.4).
- The fd limit: at start the soft ``RLIMIT_NOFILE`` is raised to the hard limit (containers
  commonly start with a soft 1,024); if it is still below ``http_max_connections`` plus a reserve
  for the database, Redis and files, the permit count is lowered to fit and a line says so —
  refusing to accept is better than failing accepts with EMFILE. In the auth process the gRPC
  port's connections (``grpc_max_connections``, 4,096) share that fd table and get what is left.

The gRPC ext_authz listener (grpc.aio, C core) has its own limits: ``auth.extauthz_grpc.grpc_options``.
"""

from __future__ import annotations

import atexit
import errno
import gc
import importlib
import logging
import os
import resource
import signal
import socket
from typing import Any, Literal

from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings, HTTP2Settings
from granian.server import Server

from meshauth import http
from meshauth.config import Settings
from meshauth.config_load import ConfigError, load_settings
from meshauth.observability import logs, multiprocess, otel
from meshauth.observability.metrics import enter_worker
from meshauth.observability.requests import Instrumented

Interface = Literal["asgi", "rsgi"]

log = logging.getLogger(__name__)

# File descriptors a worker needs beside client connections: database and Redis pools, listeners,
# log files, the Python runtime's own.
FD_RESERVE = 512
_UNLIMITED = 1 << 30
# The real factory, handed to each worker process through its environment (granian imports the
# target by name in the worker, and with the "spawn" start method nothing else carries over).
_FACTORY_ENV = "_MESHAUTH_SERVE_FACTORY"
WORKERS_KILL_TIMEOUT = 20  # seconds after a stop before granian kills a worker still running
# Used only with http_mode=auto. hyper has no header or idle timer for HTTP/2: pings (every 60 s,
# 20 s to answer) find dead peers, and a connection may carry at most 100 requests at once.
_HTTP2 = HTTP2Settings(max_concurrent_streams=100, keep_alive_interval=60_000, keep_alive_timeout=20)


def raise_fd_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _UNLIMITED
    # An unlimited hard limit still stops at the kernel's fs.nr_open (2**20 by default).
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft


def connection_permits(max_connections: int, fd_limit: int) -> int:
    """Connections one worker admits: the setting, lowered to what the fd limit leaves room for."""
    room = max(fd_limit - FD_RESERVE, 16)
    return min(max_connections, room)


def grpc_connection_cap(settings: Settings) -> int:
    """gRPC connections the auth process admits: the setting, lowered to the file descriptors the
    HTTP port's connections and the reserve leave (both ports live in one process's fd table)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return settings.grpc_max_connections
    left = soft - FD_RESERVE - connection_permits(settings.http_max_connections, soft)
    cap = min(settings.grpc_max_connections, max(64, left))
    if cap < settings.grpc_max_connections:
        log.warning(
            "open-file limit %d leaves room for %d gRPC connections, not grpc_max_connections=%d;"
            " raise the limit (ulimit -n, the container's nofile) to admit more",
            soft,
            cap,
            settings.grpc_max_connections,
        )
    return cap


def admitted_connections(settings: Settings) -> int:
    """Raise the fd limit, then the connections each worker admits; says so when the limit is low."""
    fd_limit = raise_fd_limit()
    permits = connection_permits(settings.http_max_connections, fd_limit)
    if permits < settings.http_max_connections:
        log.warning(
            "open-file limit %d leaves room for %d connections per worker, not http_max_connections=%d;"
            " raise the limit (ulimit -n, the container's nofile) to admit more",
            fd_limit,
            permits,
            settings.http_max_connections,
        )
    return permits


def check_port_free(host: str, port: int, setting: str) -> None:
    """Raise :class:`ConfigError` (naming ``setting``) when another socket listens on ``host:port``.

    granian listens with ``SO_REUSEPORT``, so its bind succeeds beside another listener that set it too —
    a second meshauth server on a busy port started, and the kernel split the connections between the
    two (a stale instance, another store or another key set answering part of the traffic). A bind
    without ``SO_REUSEPORT`` fails on a port anyone listens on; ``SO_REUSEADDR`` lets it past the
    ``TIME_WAIT`` of a server just stopped. Checked just before granian binds (a port taken in between
    still slips through, as with any check-then-bind)."""
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            problem = f"port {port} on {host} is in use by another process; choose another port or stop that one"
        else:
            problem = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise ConfigError([f"meshauth: configuration error: {setting}={port}: {problem}"]) from None


def serve(
    factory: str,
    *,
    host: str,
    port: int,
    workers: int = 1,
    interface: Interface = "asgi",
    settings: Settings | None = None,
    port_setting: str = "port",
) -> None:
    """Serve ``module:function`` (an app factory) until interrupted. Blocks. ``port_setting`` names the
    variable that chose ``port``, for the error when it is taken (:func:`check_port_free`)."""
    settings = settings or load_settings()
    check_port_free(host, port, port_setting)
    otel.require()
    permits = admitted_connections(settings)
    os.environ[_FACTORY_ENV] = factory
    # Before the workers start: they inherit the directory and write their metrics there
    # (``worker_app`` switches each one over).
    metrics_dir = multiprocess.prepare_dir(settings.metrics_dir, factory.split(":")[0])
    global _fork_hooks
    if not _fork_hooks:  # once per process: a second set would save the first's blocked mask as "before"
        os.register_at_fork(before=_hold_stops, after_in_parent=_release_stops, after_in_child=_default_stops_in_worker)
        _fork_hooks = True
    try:
        _server(factory, host, port, workers, interface, settings, permits).serve()
    finally:
        multiprocess.remove_dir(metrics_dir, settings.metrics_dir)
        # The process ends next, and its final full collection scanned every object the imports made to
        # free memory the exit frees anyway: 0.37-0.51 CPU-s, 8.5 s wall at load average 11 (a gate not
        # gone 10 s after SIGTERM in tests). Frozen, the collection skips them: 0.04 CPU-s, 0.12 s.
        gc.freeze()


_STOPS = {signal.SIGTERM, signal.SIGINT}
_mask_before_fork: set[int | signal.Signals] = set()
_fork_hooks = False


def _hold_stops() -> None:
    """Before a fork: the stop signals wait (blocked) in the forking thread, and so in the child."""
    global _mask_before_fork
    _mask_before_fork = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)


def _release_stops() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, _mask_before_fork)


def _default_stops_in_worker() -> None:
    """In a forked worker, until granian installs the worker's own handlers. A forked worker carried the
    main process's SIGTERM/SIGINT handler (it only flags the main's loop), so a stop that came while the
    worker started was lost and the main process waited for it forever (bench/adhoc/stop21-tests4). With
    the default action a stop simply ends the starting worker; one sent between the fork and here was
    held blocked, and is taken now."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _release_stops()


def _server(
    factory: str, host: str, port: int, workers: int, interface: Interface, settings: Settings, permits: int
) -> Any:  # granian's Server: one of two classes, chosen at import
    return Server(
        f"{__name__}:worker_app",
        address=host,
        port=port,
        interface=Interfaces.RSGI if interface == "rsgi" else Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1 if settings.http_mode == "http1" else HTTPModes.auto,
        factory=True,
        log_access=False,
        backlog=settings.http_backlog,
        backpressure=permits,
        http1_settings=HTTP1Settings(header_read_timeout=int(settings.http_header_read_timeout * 1000)),
        http2_settings=_HTTP2,
        # A worker that dies is replaced rather than leaving the port served by fewer workers.
        respawn_failed_workers=True,
        # The backstop for a worker that never ends (a SIGTERM lost while it started, see worker_app):
        # killed this long after the stop, inside Kubernetes' 30 s grace (after a 5 s preStop).
        workers_kill_timeout=WORKERS_KILL_TIMEOUT,
        log_dictconfig=logs.granian_config(settings.log_format),
    )


def worker_app() -> Any:
    """The factory granian runs in each worker: apply the transport settings, build the app, and
    time its requests (``observability.requests``)."""
    enter_worker()
    http.configure(load_settings())
    atexit.register(multiprocess.mark_self_dead)
    module, _, name = os.environ[_FACTORY_ENV].partition(":")
    # After the fork: the SDK's export thread must be this worker's own.
    otel.configure(_service_name(module))
    app = getattr(importlib.import_module(module), name)()
    return Instrumented(app, prefixes=tuple(getattr(app, "route_prefixes", ())))


def _service_name(module: str) -> str:
    """``meshauth.auth.app`` → ``meshauth-auth`` (OpenTelemetry's ``service.name`` by default)."""
    parts = module.split(".")
    return "-".join(parts[:2]) if len(parts) > 1 else module


def serve_asgi(factory: str, *, host: str, port: int, workers: int = 1) -> None:
    serve(factory, host=host, port=port, workers=workers, interface="asgi")
