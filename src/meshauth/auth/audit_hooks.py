"""What the auth service tells the audit stream: one short, synchronous call per site.

Every method builds one event and hands it to the bus producer's buffer (microseconds; nothing is
awaited on the request's account); the gate's, one per check, is stamped from a remembered encoding.
Off (``audit_enabled=false``) or without a producer, each is a single attribute test. Values a caller
controls (paths, reasons) are cut to ``MAX_TEXT`` characters so that an event stays under the bus's
size limit; an event refused anyway is counted by the bus and logged here at most once per minute —
never raised into the request.
"""

from __future__ import annotations

import logging
import time

import msgspec.structs

from meshauth.bus.events import (
    STAMP_BYTES,
    AuditEvent,
    AuditType,
    SubjectType,
    Template,
    audit,
    new_id,
    stamp,
    template,
)
from meshauth.bus.producer import EventTooLarge, Producer
from meshauth.bus.streams import AUDIT

log = logging.getLogger(__name__)

MAX_TEXT = 1024
# gate.decision templates kept (one per distinct verdict, subject, client, reason, transport and path):
# bounded in number and in bytes (template and key strings), as paths are the caller's to choose.
MAX_TEMPLATES = 4096
MAX_TEMPLATE_BYTES = 4 * 1024 * 1024
_LOG_EVERY = 60.0


class AuthAudit:
    def __init__(self, producer: Producer | None) -> None:
        self.producer = producer
        self._last_refusal_log = 0.0
        self._templates: dict[tuple[int, str, str, str, str, str], tuple[str, Template]] = {}
        self._template_bytes = 0

    def gate(
        self,
        verdict_status: int,
        headers: tuple[tuple[str, str], ...],
        reason: str,
        transport: str,
        path: str,
        identity: tuple[str, str] | None = None,
    ) -> None:
        """An ext_authz decision. Allowed verdicts carry the identity in their headers; a request
        refused after authentication (authz mode), in ``identity``."""
        producer = self.producer
        if producer is None:
            return
        subject = client_id = ""
        if verdict_status == 200:
            subject, client_id = headers[0][1], headers[1][1]
        elif identity is not None:
            subject, client_id = identity
        # Everything but the id and the time repeats from check to check (one client, a few paths): the
        # event's encoding and partition are kept per question and the encoding stamped (``events.stamp``):
        # what auditing costs a check is its instructions (docs/performance.md, issue 12, "Stop 22").
        question = (verdict_status, subject, client_id, reason, transport, path)
        known = self._templates.get(question)
        if known is None:
            known = self._template(question)
            if known is None:
                return
        producer.publish_to(known[0], stamp(known[1], time.time()))

    def _template(self, question: tuple[int, str, str, str, str, str]) -> tuple[str, Template] | None:
        """The partition and gate.decision template of ``question``, remembered (bounded); None if refused
        (too large)."""
        assert self.producer is not None
        status, subject, client_id, reason, transport, path = question
        event = AuditEvent(
            id="",
            time=0.0,
            type="gate.decision",
            subject=subject,
            subject_type=_kind(subject, client_id),
            client_id=client_id,
            decision="allow" if status == 200 else "deny",
            action=transport,
            resource=path[:MAX_TEXT],
            status=status,
            reason=reason[:MAX_TEXT],
        )
        tpl = template(event)
        if tpl is None:  # not a layout stamp writes: the plain path
            self._send(msgspec.structs.replace(event, id=new_id(), time=time.time()))
            return None
        try:
            self.producer.check_size(AUDIT, event.type, len(tpl[0]) + len(tpl[1]) + STAMP_BYTES)
        except EventTooLarge as exc:
            self._refused(exc)
            return None
        size = len(tpl[1]) + sum(len(part) for part in question[1:])
        if len(self._templates) >= MAX_TEMPLATES or self._template_bytes + size > MAX_TEMPLATE_BYTES:
            # Many distinct questions (paths): start again rather than grow.
            self._templates.clear()
            self._template_bytes = 0
        known = self._templates[question] = (self.producer.partition(AUDIT, subject), tpl)
        self._template_bytes += size
        return known

    def token(self, type_: AuditType, subject: str, client_id: str, *, reason: str = "") -> None:
        """token.issued / token.refreshed / token.revoked."""
        if self.producer is None:
            return
        self._publish(
            type_, subject=subject, subject_type=_kind(subject, client_id), client_id=client_id, reason=reason
        )

    def login(self, succeeded: bool, username: str, client_id: str, reason: str = "") -> None:
        if self.producer is None:
            return
        self._publish(
            "login.succeeded" if succeeded else "login.failed",
            subject=username[:MAX_TEXT],
            subject_type="user",
            client_id=client_id[:MAX_TEXT],
            decision="allow" if succeeded else "deny",
            reason=reason[:MAX_TEXT],
        )

    def admin(self, method: str, path: str, status: int) -> None:
        """An admin API call (the admin token is the subject: there is one)."""
        if self.producer is None or method == "GET":  # reads are not actions (and polling would flood)
            return
        self._publish(
            "admin.action",
            subject="admin",
            subject_type="admin",
            action=method,
            resource=path[:MAX_TEXT],
            status=status,
        )

    def _publish(self, type_: AuditType, **fields: object) -> None:
        self._send(audit(type_, **fields))

    def _send(self, event: AuditEvent) -> None:
        assert self.producer is not None
        try:
            self.producer.publish(AUDIT, event)
        except EventTooLarge as exc:
            self._refused(exc)

    def _refused(self, exc: EventTooLarge) -> None:
        now = time.monotonic()
        if now - self._last_refusal_log >= _LOG_EVERY:
            self._last_refusal_log = now
            log.warning("audit event refused: %s", exc)


def _kind(subject: str, client_id: str) -> SubjectType:
    if not subject:
        return "unknown"
    # A client-credentials token's subject is its client id.
    return "client" if subject == client_id else "user"
