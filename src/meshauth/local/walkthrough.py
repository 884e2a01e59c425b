"""The copy-paste walkthrough ``meshauth up`` prints. A test runs it exactly as printed."""

from __future__ import annotations

import json
import shlex
import sys

from meshauth.config import Settings
from meshauth.local.bootstrap import Demo

BEGIN = "# --- walkthrough: copy and paste into another terminal ---"
END = "# --- end of walkthrough ---"


def walkthrough(settings: Settings, demo: Demo, *, policy: bool, admin_token: str, authz: bool = False) -> str:
    """``admin_token`` is a shell expression that yields the token, e.g. ``$(cat var/admin-token)``.
    ``authz``: the stack runs with a route table (``meshauth up --routes``), so step 7 is live; without
    it step 7 says how to restart in authz mode (comments only: the script still runs as printed)."""
    auth = f"http://{settings.auth_host}:{settings.auth_port}"
    py = shlex.quote(sys.executable)
    creds = f'"{demo.client_id}:$(cat {shlex.quote(str(demo.secret_file))})"'
    jar = shlex.quote(str(settings.var_dir.resolve() / "walkthrough-cookies.txt"))
    lines = [
        BEGIN,
        "# 1. Get an access token for the demo client (OAuth 2.0 client credentials)",
        f"TOKEN=$(curl -s -u {creds} -d grant_type=client_credentials -d scope=read {auth}/oauth2/token"
        f" | {py} -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        "# 2. Ask the gate as Envoy would: 200 and the identity headers",
        f'curl -s -i -H "authorization: Bearer $TOKEN" {auth}/ext_authz/orders/42',
        "# 3. Introspect the token (RFC 7662)",
        f"curl -s -u {creds} -d token=$TOKEN {auth}/oauth2/introspect; echo",
        "# 4. Revoke it (RFC 7009); the gate now answers 401",
        f"curl -s -u {creds} -d token=$TOKEN {auth}/oauth2/revoke; echo",
        f'curl -s -i -H "authorization: Bearer $TOKEN" {auth}/ext_authz/orders/42',
        "# 5. Log in as the demo user; the session cookie alone passes the gate",
        f"curl -s -c {jar} -H 'content-type: application/json' -d @{shlex.quote(str(demo.login_file))}"
        f" {auth}/v1/sessions; echo",
        f"curl -s -i -b {jar} {auth}/ext_authz/profile",
    ]
    if policy:
        pol = f"http://{settings.policy_host}:{settings.policy_port}"
        admin = f'"authorization: Bearer {admin_token}"'
        rule = '@id("alice-reads") permit(principal == User::"alice", action == Action::"read", resource);'
        # JSON rather than text/plain: curl would read a body starting with "@" as a file name.
        upload = shlex.quote(json.dumps({"policies": rule, "activate": True}))
        lines += [
            "# 6. Give the policy service a Cedar policy (admin API), then ask it (AuthZEN): read yes, delete no",
            f"curl -s -H {admin} -H 'content-type: application/json' -d {upload}"
            f" {pol}/admin/stores/default/policies; echo",
        ]
        for action in ("read", "delete"):
            ask = {
                "subject": {"type": "User", "id": "alice"},
                "action": {"name": action},
                "resource": {"type": "Document", "id": "d1"},
            }
            lines.append(
                f"curl -s -H 'content-type: application/json' -d {shlex.quote(json.dumps(ask))}"
                f" {pol}/access/v1/evaluation; echo"
            )
        lines += _authz_step(auth, jar, py, live=authz)
    lines.append(END)
    return "\n".join(lines)


def _authz_step(auth: str, jar: str, py: str, *, live: bool) -> list[str]:
    """Step 7: the gate in authz mode, with examples/routes.yaml and the policy of step 6."""
    requests = [
        f"curl -s -i -b {jar} {auth}/ext_authz/documents/d1",
        f"curl -s -i -X DELETE -b {jar} {auth}/ext_authz/documents/d1",
    ]
    if live:
        return [
            "# 7. Authz mode: the gate asks the policy service (routes: examples/routes.yaml). alice's session",
            "#    may read document d1 (200) but not delete it (403, x-meshauth-reason: policy_denied)",
            *requests,
        ]
    return [
        "# 7. Authz mode (the gate asks the policy service too): stop this stack with Ctrl-C, restart it with",
        f"#      {py} -m meshauth up --routes examples/routes.yaml",
        "#    and run its walkthrough; its step 7 shows alice's session reading document d1 (200)",
        "#    and refused deleting it (403, x-meshauth-reason: policy_denied):",
        *(f"#      {line}" for line in requests),
    ]
