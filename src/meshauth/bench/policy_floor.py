"""The decision endpoint's floor: a trivial RSGI app that reads the request body and answers a fixed
decision, under the same granian settings as ``meshauth serve policy``.

``bench.floor`` answers without reading the body; a decision request cannot skip that read (under
granian it is a native future resolved from the I/O thread, the largest per-request cost measured
in ``decision_front``). Both floors are measured beside the service (``policy_coalesce``), so the
distance to each is the service's own work: parsing, deciding, encoding, instrumentation.
"""

from __future__ import annotations

from typing import Any

_HEADERS = [("content-type", "application/json")]
_ANSWER = b'{"decision":true,"context":{"revision":1,"policies":[],"errors":[]}}'


class BodyFloor:
    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        await protocol()
        protocol.response_bytes(200, _HEADERS, _ANSWER)


app = BodyFloor()


def create_app() -> BodyFloor:
    return app
