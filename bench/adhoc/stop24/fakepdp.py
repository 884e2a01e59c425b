"""A stand-in policy service for the cold row (stop 24): reads the body, answers every item permitted with a
well-formed AuthZEN context; served by the same granian RSGI (or ASGI) path as the real one. What the real
service costs per call beyond this is meshauth's own work; what this costs is the serving floor."""
import msgspec

ITEM = {"decision": True, "context": {"revision": 1, "entities_version": 1, "policies": ["bench-reads"], "errors": []}}
RESP = {n: msgspec.json.encode({"evaluations": [ITEM] * n}) for n in range(1, 1025)}
ONE = msgspec.json.encode(ITEM)
H = [("content-type", "application/json")]


class Fake:
    async def __rsgi__(self, scope, protocol):
        body = await protocol()
        if scope.path.endswith("/evaluations"):
            protocol.response_bytes(200, H, RESP[max(1, body.count(b'"subject"'))])
        elif scope.path.endswith("/evaluation"):
            protocol.response_bytes(200, H, ONE)
        elif scope.path == "/healthz" or scope.path == "/readyz":
            protocol.response_bytes(200, H, b'{"status":"ok"}')
        else:
            protocol.response_bytes(201, H, b"{}")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        path = scope["path"]
        payload, status = (RESP[max(1, body.count(b'"subject"'))], 200) if path.endswith("/evaluations") else (ONE, 200) if path.endswith("/evaluation") else ((b'{"status":"ok"}', 200) if path in ("/healthz", "/readyz") else (b"{}", 201))
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})


def create_app():
    return Fake()
