"""``meshauth policy`` and ``meshauth entities``: policy stores from the command line.

Every command goes through the running policy service's admin API (``--url``, default
``http://127.0.0.1:8090`` or ``MESHAUTH_POLICY_URL``), so what it changes is served at once by the
service it talks to and by every other replica within their refresh interval. The admin token comes
from ``MESHAUTH_ADMIN_TOKEN`` or ``var/admin-token``.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from meshauth.admin_token import read_admin_token
from meshauth.config_display import mask_url
from meshauth.config_load import load_settings

app = typer.Typer(help="Cedar policy stores: push, list versions, activate.", no_args_is_help=True)
entities_app = typer.Typer(help="Entities of a policy store.", no_args_is_help=True)

TIMEOUT_SECONDS = 120.0
URL_OPTION = typer.Option(None, "--url", help="Policy service base URL [default: MESHAUTH_POLICY_URL or settings].")


def _base_url(url: str | None) -> str:
    if url:
        return url.rstrip("/")
    env = os.environ.get("MESHAUTH_POLICY_URL")
    if env:
        return env.rstrip("/")
    settings = load_settings()
    return f"http://{settings.policy_host}:{settings.policy_port}"


class CommandError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error_description", body.get("error", f"HTTP {status}")))
        self.status = status
        self.body = body


@dataclass(frozen=True)
class AdminClient:
    base: str
    token: str | None

    def call(
        self, method: str, path: str, *, body: bytes | None = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        headers = {"accept": "application/json", "x-meshauth-author": os.environ.get("USER", "cli")}
        if self.token:
            if not _header_safe(self.token):
                # http.client refuses it with a ValueError that quotes the whole line: the token, in a traceback.
                raise CommandError(0, {"error": "bad_token", "error_description": BAD_TOKEN})
            headers["authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["content-type"] = content_type
        shown = mask_url(self.base)
        try:
            req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)  # noqa: S310 - URL is the operator's
            with urllib.request.urlopen(req, timeout=TIMEOUT_SECONDS) as resp:  # noqa: S310
                raw = resp.read() or b"{}"
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {"error": "http_error", "error_description": raw.decode(errors="replace")[:500]}
            raise CommandError(exc.code, parsed) from None
        except urllib.error.URLError as exc:
            reason = exc.reason if isinstance(exc.reason, str) else _os_reason(exc.reason)
            raise CommandError(0, {"error": "unreachable", "error_description": f"{shown}: {reason}"}) from None
        except (OSError, http.client.HTTPException) as exc:  # reset or timed out while reading the answer
            reason = _os_reason(exc)
            raise CommandError(0, {"error": "unreachable", "error_description": f"{shown}: {reason}"}) from None
        except ValueError:  # not a URL urllib can use (its message quotes the whole URL, password included)
            what = f"{shown}: not an http:// or https:// URL with a valid port"
            raise CommandError(0, {"error": "bad_url", "error_description": what}) from None
        # Parsed outside the try above: JSON's ValueError is not a bad URL.
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            what = f"{shown}: not a meshauth policy service (its answer is not a JSON object)"
            raise CommandError(0, {"error": "bad_answer", "error_description": what})
        return data


BAD_TOKEN = (
    "the admin token (MESHAUTH_ADMIN_TOKEN or var/admin-token) holds a control character (a CR from a CRLF file,"
    " a newline) or a character beyond Latin-1: an HTTP header cannot carry it; the token is not shown"
)


def _header_safe(token: str) -> bool:
    return all(" " <= c <= "\xff" and c != "\x7f" for c in token)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _client(url: str | None) -> AdminClient:
    return AdminClient(_base_url(url), os.environ.get("MESHAUTH_ADMIN_TOKEN") or read_admin_token(load_settings()))


def _store_path(store: str) -> str:
    # errors: a non-UTF-8 argument (surrogate-escaped by Python) is sent as the bytes given, for the service to judge.
    return "/admin/stores/" + urllib.parse.quote(store, safe="", errors="surrogateescape")


def _fail(exc: CommandError, sources: list[tuple[Path, int, int]] | None = None) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    for err in exc.body.get("errors", []):
        where = _where(err.get("line"), err.get("column"), sources)
        name = f" [{err['id'] or err['policy_id']}]" if err.get("id") or err.get("policy_id") else ""
        typer.echo(f"  {where}{name}: {err.get('message')}", err=True)
    return typer.Exit(1)


def _where(line: int | None, column: int | None, sources: list[tuple[Path, int, int]] | None) -> str:
    """Map a line of the concatenated upload back to the file it came from."""
    if line is None:
        return "?"
    for path, first, count in sources or []:
        if first <= line < first + count:
            return f"{path}:{line - first + 1}:{column}"
    return f"line {line}, column {column}"


def _policy_files(target: Path) -> list[Path]:
    if target.is_dir():
        files = sorted(p for p in target.rglob("*.cedar") if p.is_file())
        if not files:
            raise typer.BadParameter(f"{target} holds no *.cedar files")
        return files
    if not target.exists():
        raise typer.BadParameter(f"{target} does not exist")
    if not target.is_file():
        raise typer.BadParameter(f"{target} is not a regular file or a directory")
    return [target]


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The file, read up to ``limit`` (default: the upload limit) and refused past it: the service refuses a
    larger upload anyway, and /dev/zero or a multi-GB file named by mistake was read whole into memory first."""
    if limit is None:
        limit = load_settings().policy_max_upload_bytes
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise typer.BadParameter(f"{path} cannot be read ({exc.strerror})") from None
    if len(data) > limit:
        raise typer.BadParameter(
            f"{path} is larger than MESHAUTH_POLICY_MAX_UPLOAD_BYTES ({limit} bytes), the most an upload may weigh"
        )
    return data


def _read_policy(path: Path, limit: int) -> str:
    try:
        return _read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise typer.BadParameter(f"{path} is not UTF-8 text (byte {exc.start})") from None


@app.command("push")
def push(
    target: Path = typer.Argument(..., help="A .cedar file, or a directory whose *.cedar files form one version."),
    store: str = typer.Option("default", "--store", "-s", help="Policy store."),
    activate: bool = typer.Option(False, "--activate", help="Activate the new version at once."),
    url: str | None = URL_OPTION,
) -> None:
    """Upload policies as a new version (validated; the first version of a store is activated)."""
    parts: list[str] = []
    sources: list[tuple[Path, int, int]] = []
    line = 1
    budget = load_settings().policy_max_upload_bytes  # for every file together: they are sent as one upload
    for path in _policy_files(target):
        text = _read_policy(path, budget)
        budget -= len(text.encode())
        if not text.endswith("\n"):
            text += "\n"
        count = text.count("\n")
        sources.append((path, line, count))
        parts.append(text)
        line += count
    body: dict[str, Any] = {"policies": "".join(parts)}
    if activate:
        body["activate"] = True
    try:
        result = _client(url).call("POST", _store_path(store) + "/policies", body=json.dumps(body).encode())
    except CommandError as exc:
        raise _fail(exc, sources) from None
    state = "active" if result["activated"] else f"not active (active: {result['active_version']})"
    typer.echo(f"{store}: version {result['version']} {state}, revision {result['revision']}")


@app.command("versions")
def versions(
    store: str = typer.Argument("default", help="Policy store."),
    url: str | None = URL_OPTION,
) -> None:
    """List a store's policy versions; '*' marks the active one."""
    try:
        result = _client(url).call("GET", _store_path(store) + "/policies")
    except CommandError as exc:
        raise _fail(exc) from None
    typer.echo(f"store {store}  revision {result['revision']}  active {result['active_version']}")
    for v in result["versions"]:
        mark = "*" if v["active"] else " "
        typer.echo(f"{mark} {v['version']:>5}  {v['created_at']:>10}  {v['author']:<16} {v['sha256'][:12]}")


@app.command("activate")
def activate_version(
    store: str = typer.Argument(..., help="Policy store."),
    version: int = typer.Argument(..., help="Version to activate (an older one rolls back)."),
    url: str | None = URL_OPTION,
) -> None:
    """Activate a version (also how to roll back)."""
    try:
        result = _client(url).call("POST", f"{_store_path(store)}/policies/{version}/activate")
    except CommandError as exc:
        raise _fail(exc) from None
    typer.echo(f"{store}: version {result['version']} active, revision {result['revision']}")


PRECEDENCE_OPTION = typer.Option(
    None,
    "--attribute-precedence",
    help="request: a decision request's properties replace stored attributes (default); "
    "stored: stored attributes win (use for attributes that carry security meaning).",
)


@app.command("store")
def store_settings(
    store: str = typer.Argument(..., help="Policy store (created if it does not exist)."),
    attribute_precedence: str | None = PRECEDENCE_OPTION,
    url: str | None = URL_OPTION,
) -> None:
    """Show a store, or set its attribute precedence (every replica follows, at a new revision)."""
    if attribute_precedence is not None and attribute_precedence not in ("request", "stored"):
        raise typer.BadParameter("must be request or stored", param_hint="--attribute-precedence")
    try:
        if attribute_precedence is None:
            result = _client(url).call("GET", _store_path(store))
        else:
            body = json.dumps({"attribute_precedence": attribute_precedence}).encode()
            result = _client(url).call("PUT", _store_path(store), body=body)
    except CommandError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"store {store}  revision {result['revision']}  active {result['active_version']}"
        f"  attribute precedence {result['attribute_precedence']}"
    )


@app.command("schema")
def schema(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Cedar (.cedarschema) or JSON schema."),
    store: str = typer.Option("default", "--store", "-s", help="Policy store."),
    url: str | None = URL_OPTION,
) -> None:
    """Set a store's schema (refused when the active policies would not type-check under it)."""
    fmt = "json" if file.suffix == ".json" else "cedar"
    try:
        result = _client(url).call(
            "PUT", f"{_store_path(store)}/schema?format={fmt}", body=_read_bytes(file), content_type="text/plain"
        )
    except CommandError as exc:
        raise _fail(exc) from None
    typer.echo(f"{store}: schema set, revision {result['revision']}")


@entities_app.command("load")
def load_entities(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Cedar JSON entities (an array)."),
    store: str = typer.Option("default", "--store", "-s", help="Policy store."),
    url: str | None = URL_OPTION,
) -> None:
    """Upsert entities from a file in Cedar's JSON entity format, in one transaction."""
    try:
        result = _client(url).call("POST", _store_path(store) + "/entities", body=_read_bytes(file))
    except CommandError as exc:
        raise _fail(exc) from None
    typer.echo(f"{store}: {result['upserted']} entities written")


@entities_app.command("delete")
def delete_entity(
    entity_type: str = typer.Argument(..., help="Entity type, e.g. App::User."),
    entity_id: str = typer.Argument(..., help="Entity id."),
    store: str = typer.Option("default", "--store", "-s", help="Policy store."),
    url: str | None = URL_OPTION,
) -> None:
    """Delete one entity."""
    path = f"{_store_path(store)}/entities/{urllib.parse.quote(entity_type, safe=':', errors='surrogateescape')}/"
    path += urllib.parse.quote(entity_id, safe="", errors="surrogateescape")
    try:
        _client(url).call("DELETE", path)
    except CommandError as exc:
        raise _fail(exc) from None
    typer.echo(f"{store}: deleted {entity_type}::{json.dumps(entity_id)}")
