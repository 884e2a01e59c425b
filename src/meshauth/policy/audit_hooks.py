"""What the policy service tells the audit stream: one event per decision, policy upload and
activation — one short synchronous call per site (see ``auth.audit_hooks`` for the rules).

The service runs without Redis when none is configured; then, or with ``audit_enabled=false``, there
is no producer and each call is one attribute test. A decision event's ``latency_us`` is its
request's time in the service (a batch's items share it); ``subject`` is the principal's id and
``subject_type`` its entity type.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from meshauth import wire
from meshauth.bus.events import AuditEvent, audit, new_id
from meshauth.bus.producer import EventTooLarge, Producer
from meshauth.bus.streams import AUDIT
from meshauth.policy.authzen import Query

log = logging.getLogger(__name__)

MAX_TEXT = 1024


class PolicyAudit:
    def __init__(self, producer: Producer | None = None) -> None:
        self.producer = producer

    def decisions(
        self, store: str, queries: Sequence[object], decisions: Sequence[wire.Decision], started: int
    ) -> None:
        """``started``: ``time.perf_counter_ns()`` when the request began."""
        producer = self.producer
        if producer is None:
            return
        latency_us = (time.perf_counter_ns() - started) // 1000
        now = time.time()
        for q, d in zip(queries, decisions, strict=False):
            if not isinstance(q, Query):  # an item refused before evaluation: not a decision of the engine
                continue
            # Built directly (not through ``audit(**fields)``): this runs for every decision.
            event = AuditEvent(
                id=new_id(),
                time=now,
                type="policy.decision",
                subject=q.principal[1][:MAX_TEXT],
                subject_type=q.principal[0][:MAX_TEXT],
                decision="allow" if d.decision else "deny",
                action=q.action[1][:MAX_TEXT],
                store=store,
                resource=f"{q.resource[0]}:{q.resource[1]}"[:MAX_TEXT],
                latency_us=latency_us,
            )
            self._send(event)

    def uploaded(self, store: str, result: dict[str, Any], author: str) -> None:
        if self.producer is None:
            return
        self._publish("policy.uploaded", subject=author[:MAX_TEXT], subject_type="admin", store=store,
                      resource=f"version {result.get('version')}")  # fmt: skip
        if result.get("activated"):
            self.activated(store, result)

    def activated(self, store: str, result: dict[str, Any]) -> None:
        if self.producer is None:
            return
        self._publish("policy.activated", subject="admin", subject_type="admin", store=store,
                      resource=f"version {result.get('active_version')}")  # fmt: skip

    def _publish(self, type_: Any, **fields: object) -> None:
        self._send(audit(type_, **fields))

    def _send(self, event: AuditEvent) -> None:
        assert self.producer is not None
        try:
            self.producer.publish(AUDIT, event)
        except EventTooLarge as exc:  # cut fields keep events small; counted by the bus if not
            log.debug("audit event refused: %s", exc)
