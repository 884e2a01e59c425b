"""A Sentinel failover under the auth service: the primary is SIGSTOPped (its sockets accept and never
answer — worse than a crash), the Sentinel promotes the replica, and the service carries on against
the new primary with no restart and no configuration change. Meanwhile it fails closed: a revocation
or a login that cannot be written is a 503, never a 200 that Redis did not keep."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from meshauth.redis_client import connect
from tests.auth.conftest import SECRET, Harness, basic, login, make_settings, start_harness
from tests.bus.helpers import until
from tests.ha.servers import cli, sentinel_setup


async def test_service_continues_after_a_sentinel_failover(sqlite_url: str, tmp_path: Path) -> None:
    with sentinel_setup(tmp_path / "ha") as ha:
        settings = make_settings(sqlite_url, ha.url, tmp_path / "var")
        async for h in start_harness(settings):
            await h.add_client()
            await h.add_user()
            before = await login(h)
            token = (await h.token())["access_token"]
            cli(ha.primary.port, "WAIT", "1", "2000")  # the session is on the replica too

            ha.primary.signal(signal.SIGSTOP)
            stopped = time.monotonic()
            during: list[int] = []
            while ha.primary_port() == ha.primary.port:
                r = await h.http.post("/oauth2/revoke", data={"token": token}, headers=basic("svc", SECRET))
                during.append(r.status_code)
                assert time.monotonic() - stopped < 30, "no failover within 30 s"
            promoted = time.monotonic() - stopped
            assert ha.primary_port() == ha.replica.port
            # Fail closed while the primary hung: no revocation reported done (one may have landed
            # just as the replica took over, and then it is on the new primary, checked below).
            assert len(during) >= 2 and set(during[:-1]) == {503}, during

            async def revoked_and_refused(h: Harness = h, token: str = token) -> bool:
                r = await h.http.post("/oauth2/revoke", data={"token": token}, headers=basic("svc", SECRET))
                return r.status_code == 200 and (await h.gate(token)).status_code == 401

            await until(revoked_and_refused, within=15, what="revocation works against the new primary")
            recovered = time.monotonic() - stopped
            cookie = {"cookie": f"meshauth_session={before}"}
            assert (await h.http.get("/ext_authz/app", headers=cookie)).status_code == 200  # replicated
            after = await login(h)
            assert (
                await h.http.get("/ext_authz/app", headers={"cookie": f"meshauth_session={after}"})
            ).status_code == 200
            fresh = (await h.token())["access_token"]
            assert (await h.gate(fresh)).status_code == 200

        redis = connect(ha.url)
        try:
            assert await redis.exists(settings.redis_prefix + "revoked:" + "x") == 0  # the new primary answers
            role = await redis.execute_command("ROLE")
            assert role[0] == b"master"
        finally:
            await redis.aclose()
    print(f"failover: promoted after {promoted:.1f}s, service recovered after {recovered:.1f}s; during: {during}")
