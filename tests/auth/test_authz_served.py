"""Authz mode as ``meshauth serve auth`` runs it (granian): the path the route table sees is the one
the client sent, so encoded spellings are judged as sent, not as the server decoded them."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from redis.asyncio import Redis

from tests.auth.authz_processes import client_token, policy_process, served_gate
from tests.served import call


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
