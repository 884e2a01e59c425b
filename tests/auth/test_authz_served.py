"""Authz mode as ``meshauth serve auth`` runs it (granian): the path the route table sees is the one
the client sent, so encoded spellings are judged as sent, not as the server decoded them."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

from redis.asyncio import Redis

from tests.auth.authz_processes import client_token, policy_process, served_gate
from tests.served import ADMIN, call


def test_served_gate_matches_paths_as_sent(tmp_path: Path, valkey_url: str, redis: Redis) -> None:
    with policy_process(tmp_path / "pdp") as pdp, served_gate(tmp_path / "gate", valkey_url, pdp.url) as gate:
        auth = {"authorization": f"Bearer {client_token(gate)}"}

        def ask(method: str, path: str) -> tuple[int, str | None]:
            req = urllib.request.Request(gate.url + "/ext_authz" + path, method=method, headers=auth)
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return resp.status, resp.headers.get("x-meshauth-reason")
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers.get("x-meshauth-reason")

        assert ask("GET", "/documents/d1") == (200, None)
        assert ask("GET", "/documents/d%31?q=%2e%2e") == (200, None)
        assert ask("DELETE", "/documents/d1") == (403, "policy_denied")
        assert ask("GET", "/documents/secret") == (403, "policy_denied")
        assert ask("GET", "/documents/..%2Fsecret") == (403, "path_not_canonical")
        assert ask("GET", "/documents/%2e%2e") == (403, "path_not_canonical")
        assert ask("GET", "/documents/%FF") == (403, "path_not_canonical")
        assert ask("GET", "/documents/a%00b") == (403, "path_not_canonical")
        # Tomcat, Jetty and Spring drop ";params" from a segment and serve /documents/secret.
        assert ask("GET", "/documents/secret;x") == (403, "path_not_canonical")
        assert ask("GET", "/documents/secret%3Bjsessionid=1") == (403, "path_not_canonical")
        assert ask("GET", "/orders/1") == (403, "no_route")
        status, _ = call("GET", gate.url + "/readyz")
        assert status == 200


def test_served_hostile_numbers_are_400_and_the_worker_keeps_serving(
    tmp_path: Path, valkey_url: str, redis: Redis
) -> None:
    """Numbers that once were 500s on the served process: an int past 64 bits in /v1/authorize's
    context, ``limit=²`` (``str.isdigit`` says yes, ``int`` raises) and a forged cursor past 2^63."""
    with policy_process(tmp_path / "pdp") as pdp, served_gate(tmp_path / "gate", valkey_url, pdp.url) as gate:
        bearer = {"authorization": f"Bearer {client_token(gate)}", "content-type": "application/json"}
        question = {"action": "read", "resource": {"type": "Document", "id": "d1"}}
        body = json.dumps({**question, "context": {"n": 10**30}}).encode()
        assert call("POST", gate.url + "/v1/authorize", body=body, headers=bearer)[0] == 400
        admin = {"authorization": f"Bearer {ADMIN}"}
        forged = base64.urlsafe_b64encode(b"9" * 60 + b":x").decode().rstrip("=")
        for query in ("limit=%C2%B2", f"cursor={forged}"):
            status, raw = call("GET", gate.url + "/admin/audit?" + query, headers=admin)
            assert status == 400, raw
        status, raw = call("POST", gate.url + "/v1/authorize", body=json.dumps(question).encode(), headers=bearer)
        assert status == 200 and json.loads(raw)["decision"] is True
        assert "Traceback" not in gate.log()
