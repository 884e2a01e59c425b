"""What the auth service tells the audit stream: one short, synchronous call per site.

Every method builds one event and hands it to the bus producer's buffer (microseconds; nothing is
awaited on the request's account). Off (``audit_enabled=false``) or without a producer, each is a
single attribute test. Values a caller controls (paths, reasons) are cut to ``MAX_TEXT`` characters so
that an event stays under the bus's size limit; an event refused anyway is counted by the bus and
logged here at most once per minute — never raised into the request.
"""

from __future__ import annotations

import logging
import time

from meshauth.bus.events import AuditEvent, AuditType, SubjectType, audit, new_id
from meshauth.bus.producer import EventTooLarge, Producer
from meshauth.bus.streams import AUDIT

log = logging.getLogger(__name__)

MAX_TEXT = 1024
_LOG_EVERY = 60.0


class AuthAudit:
    def __init__(self, producer: Producer | None) -> None:
        self.producer = producer
        self._last_refusal_log = 0.0

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
        if self.producer is None:
            return
        subject = client_id = ""
        if verdict_status == 200:
            subject, client_id = headers[0][1], headers[1][1]
        elif identity is not None:
            subject, client_id = identity
        self._send(
            AuditEvent(
                id=new_id(),
                time=time.time(),
                type="gate.decision",
                subject=subject,
                subject_type=_kind(subject, client_id),
                client_id=client_id,
                decision="allow" if verdict_status == 200 else "deny",
                action=transport,
                resource=path[:MAX_TEXT],
                status=verdict_status,
                reason=reason[:MAX_TEXT],
            )
        )

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
