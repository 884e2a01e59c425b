# issue 12 scratch: the HTTP gate's audit hook before the answer is sent (not after)
import meshauth.auth.extauthz_http as _x


async def _finish(self, verdict, scope, send):
    _x.count_gate_decision("http", verdict.credential, verdict.status)
    self._gate.audit.gate(verdict.status, verdict.headers, verdict.reason, "http", scope["path"])
    await self._respond(send, verdict.status, verdict.encoded())


_x.ExtAuthzHttp._finish = _finish
