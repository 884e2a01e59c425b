# issue 12 scratch: the HTTP gate's audit hook in a call_soon callback after the answer is sent
import asyncio

import meshauth.auth.extauthz_http as _x


async def _finish(self, verdict, scope, send):
    _x.count_gate_decision("http", verdict.credential, verdict.status)
    try:
        await self._respond(send, verdict.status, verdict.encoded())
    finally:
        asyncio.get_running_loop().call_soon(
            self._gate.audit.gate, verdict.status, verdict.headers, verdict.reason, "http", scope["path"]
        )


_x.ExtAuthzHttp._finish = _finish
