"""HTTP routes of the admin API (admin bearer token): stores, policy versions, schemas, entities.

Every route checks the admin token before anything else; bodies are bounded by
``policy_max_upload_bytes`` (uploads) or ``policy_max_request_bytes`` (store settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshauth.admin_token import is_admin, one_authorization, read_admin_token
from meshauth.config import Settings
from meshauth.http import json_response, media_type, read_body
from meshauth.policy.admin import SCHEMA_FORMATS, Admin
from meshauth.policy.audit_hooks import PolicyAudit
from meshauth.policy.errors import bad_request, not_found, not_json, unauthorized
from meshauth.policy.names import check_store, check_uid, refuse_nul
from meshauth.policy.registry import Registry
from meshauth.policy.stores import DEFAULT_STORE, PRECEDENCES

_JSON = "application/json"


def _store(request: Request) -> str:
    return check_store(request.path_params.get("store", DEFAULT_STORE))


def _media(request: Request) -> str:
    return media_type(request.headers.get("content-type"))


def _decode_json(raw: bytes) -> Any:
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise not_json(exc) from None
    except UnicodeDecodeError as exc:  # msgspec checks UTF-8 inside strings only when it decodes them
        raise bad_request(
            "body", f"not valid JSON: a string is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None


def _flag(request: Request, name: str) -> bool | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise bad_request(name, "must be true or false")


MAX_VERSION = 2**31 - 1  # the column is a 32-bit INTEGER on PostgreSQL: no version is above it


def _version(request: Request) -> int:
    """The path's version number: ASCII digits only (``str.isdigit`` also accepts ``²`` and ``٣``),
    and one past what the database can hold is a version that does not exist."""
    raw = request.path_params["version"]
    if not (raw.isascii() and raw.isdigit()):
        raise bad_request("version", "must be a positive integer")
    # Leading zeros can run past the 4,300 digits ``int()`` converts: count the significant ones.
    significant = raw.lstrip("0")
    if len(significant) > len(str(MAX_VERSION)) or int(significant or 0) > MAX_VERSION:
        raise not_found(f"store {_store(request)!r} has no policy version {significant}")
    return int(significant or 0)


@dataclass
class AdminRoutes:
    settings: Settings
    registry: Registry
    admin: Admin
    admin_token: str | None
    audit: PolicyAudit = field(default_factory=PolicyAudit)

    def is_admin(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the admin token (constant-time)."""
        return is_admin(authorization, self.admin_token or read_admin_token(self.settings))

    def _check_admin(self, request: Request) -> None:
        if not self.is_admin(one_authorization(request.headers.getlist("authorization"))):
            raise unauthorized()

    async def _admin_body(self, request: Request) -> bytes:
        self._check_admin(request)
        return await read_body(request, self.settings.policy_max_upload_bytes)

    async def put_store(self, request: Request) -> Response:
        """Create a store; an optional JSON body ``{"attribute_precedence": "request" | "stored"}``
        also sets its precedence (an empty body, as before, leaves an existing store as it is)."""
        self._check_admin(request)
        store = _store(request)
        body = await read_body(request, self.settings.policy_max_request_bytes)
        if not body.strip():
            return json_response(await self.admin.create_store(store))
        doc = _decode_json(body)
        if not isinstance(doc, dict):
            raise bad_request("body", 'must be a JSON object, e.g. {"attribute_precedence": "stored"}')
        for key in doc:
            if key != "attribute_precedence":
                # Refused, not ignored: a misspelt key would otherwise leave a store open silently.
                raise bad_request(str(key), "unknown store setting (known: attribute_precedence)")
        precedence = doc.get("attribute_precedence")
        if precedence not in PRECEDENCES:
            raise bad_request("attribute_precedence", f"must be one of {', '.join(PRECEDENCES)}")
        return json_response(await self.admin.configure_store(store, attribute_precedence=precedence))

    async def get_store(self, request: Request) -> Response:
        self._check_admin(request)
        store = _store(request)
        info = await self.admin.store_info(store)
        info["process"] = self.registry.describe(store)
        return json_response(info)

    async def list_stores(self, request: Request) -> Response:
        self._check_admin(request)
        return json_response(await self.admin.list_stores())

    async def delete_store(self, request: Request) -> Response:
        self._check_admin(request)
        return json_response(await self.admin.delete_store(_store(request)))

    async def post_policies(self, request: Request) -> Response:
        store = _store(request)
        body = await self._admin_body(request)
        activate = _flag(request, "activate")
        author = request.headers.get("x-meshauth-author", "admin")
        if _media(request) == _JSON:
            doc = _decode_json(body)
            if not isinstance(doc, dict):
                raise bad_request("body", 'must be {"policies": "…", "activate": true}')
            text = doc.get("policies")
            if not isinstance(text, str):
                raise bad_request("policies", "must be a string of Cedar policy text")
            if "activate" in doc:
                if not isinstance(doc["activate"], bool):
                    raise bad_request("activate", "must be true or false")
                activate = doc["activate"]
            if "author" in doc:
                if not isinstance(doc["author"], str):
                    raise bad_request("author", "must be a string")
                author = doc["author"]
        else:
            try:
                text = body.decode()
            except UnicodeDecodeError:
                raise bad_request("body", "Cedar policy text must be UTF-8") from None
        result = await self.admin.upload(store, text, activate=activate, author=author)
        self.audit.uploaded(store, result, author)
        return json_response(result, status=201)

    async def get_policies(self, request: Request) -> Response:
        self._check_admin(request)
        return json_response(await self.admin.versions(_store(request)))

    async def get_version(self, request: Request) -> Response:
        self._check_admin(request)
        return json_response(await self.admin.version(_store(request), _version(request)))

    async def activate(self, request: Request) -> Response:
        self._check_admin(request)
        store = _store(request)
        result = await self.admin.activate(store, _version(request))
        self.audit.activated(store, result)
        return json_response(result)

    async def put_schema(self, request: Request) -> Response:
        store = _store(request)
        body = await self._admin_body(request)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise bad_request("body", "a schema must be UTF-8") from None
        fmt = request.query_params.get("format")
        if fmt is None:
            fmt = "json" if _media(request) == _JSON or text.lstrip().startswith("{") else "cedar"
        if fmt not in SCHEMA_FORMATS:
            raise bad_request("format", f"must be one of {', '.join(SCHEMA_FORMATS)}")
        return json_response(await self.admin.put_schema(store, text, fmt))

    async def get_schema(self, request: Request) -> Response:
        self._check_admin(request)
        return json_response(await self.admin.get_schema(_store(request)))

    async def post_entities(self, request: Request) -> Response:
        store = _store(request)
        body = await self._admin_body(request)
        doc = _decode_json(body)
        if isinstance(doc, dict) and "entities" in doc:
            doc = doc["entities"]
        return json_response(await self.admin.upsert_entities(store, doc))

    def _entity_uid(self, request: Request) -> tuple[str, str]:
        # Path parameters are already percent-decoded (once); decoding again would read ``a%2541`` as ``aA``.
        etype, eid = check_uid("entity", request.path_params["type"], request.path_params["id"])
        return etype, refuse_nul("entity.id", eid)

    async def delete_entity(self, request: Request) -> Response:
        self._check_admin(request)
        etype, eid = self._entity_uid(request)
        return json_response(await self.admin.delete_entity(_store(request), etype, eid))

    async def get_entity(self, request: Request) -> Response:
        self._check_admin(request)
        etype, eid = self._entity_uid(request)
        data = await self.admin.get_entity(_store(request), etype, eid)
        return Response(data, media_type=_JSON)

    def routes(self) -> list[Route]:
        a = "/admin/stores/{store}"
        return [
            Route("/admin/stores", self.list_stores, methods=["GET"]),
            Route(a, self.put_store, methods=["PUT"]),
            Route(a, self.get_store, methods=["GET"]),
            Route(a, self.delete_store, methods=["DELETE"]),
            Route(f"{a}/policies", self.post_policies, methods=["POST"]),
            Route(f"{a}/policies", self.get_policies, methods=["GET"]),
            Route(a + "/policies/{version}", self.get_version, methods=["GET"]),
            Route(a + "/policies/{version}/activate", self.activate, methods=["POST"]),
            Route(f"{a}/schema", self.put_schema, methods=["PUT"]),
            Route(f"{a}/schema", self.get_schema, methods=["GET"]),
            Route(f"{a}/entities", self.post_entities, methods=["POST"]),
            Route(a + "/entities/{type}/{id:path}", self.delete_entity, methods=["DELETE"]),
            Route(a + "/entities/{type}/{id:path}", self.get_entity, methods=["GET"]),
        ]
