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
from typing import NamedTuple

import msgspec.structs

from meshauth.bus.events import (
    STAMP_BYTES,
    AuditEvent,
    AuditType,
    SubjectType,
    audit,
    new_id,
    stamp,
    template,
)
from meshauth.bus.producer import EventTooLarge, Producer
from meshauth.bus.streams import AUDIT

log = logging.getLogger(__name__)

MAX_TEXT = 1024
# gate.decision templates kept (one per distinct verdict, subject, client, reason and transport):
# bounded in number and in bytes (template and key strings), as reasons and subjects vary.
MAX_TEMPLATES = 4096
MAX_TEMPLATE_BYTES = 4 * 1024 * 1024
_LOG_EVERY = 60.0
_pack_str = msgspec.msgpack.Encoder().encode
# What a family's template is made with in place of the path: a value no path is (a path is cut to
# MAX_TEXT characters), found in the template by its encoding after the resource key's.
_MARK = "\x00" * (MAX_TEXT + 1)
_RESOURCE_KEY = _pack_str("resource")
_MARKED = _RESOURCE_KEY + _pack_str(_MARK)


class _Family(NamedTuple):
    """A gate.decision template split around its path: an event is ``stamp((head, before + path +
    after))``; ``fixed`` its size without the path."""

    partition: str
    head: bytes
    before: bytes
    after: bytes
    fixed: int


class AuthAudit:
    def __init__(self, producer: Producer | None) -> None:
        self.producer = producer
        self._last_refusal_log = 0.0
        self._templates: dict[tuple[int, str, str, str, str], _Family] = {}
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
        # Everything but the id, the time and the path repeats from check to check (one client, a few
        # verdicts): the event's encoding around its path, and its partition, are kept per family and
        # the path spliced in (``_Family``). Per question (the path too) every never-seen path built and
        # encoded a whole event: 48k of the ~345k instructions of a cold authz check in process
        # (bench/adhoc/stop24/gate_instr.py). What auditing costs a check is its instructions
        # (docs/performance.md, issue 12, "Stop 22").
        family = (verdict_status, subject, client_id, reason, transport)
        known = self._templates.get(family)
        if known is None:
            known = self._template(family, path)
            if known is None:
                return
        resource = _pack_str(path[:MAX_TEXT])
        size = known.fixed + len(resource)
        if size > producer.config.max_event_bytes:
            try:
                producer.check_size(AUDIT, "gate.decision", size)
            except EventTooLarge as exc:
                self._refused(exc)
                return
        producer.publish_to(known.partition, stamp((known.head, known.before + resource + known.after), time.time()))

    def _template(self, family: tuple[int, str, str, str, str], path: str) -> _Family | None:
        """The partition and the split gate.decision template of ``family`` (made with ``path``),
        remembered (bounded); None if refused (too large) or if the split cannot be proved (below)."""
        assert self.producer is not None
        status, subject, client_id, reason, transport = family

        def event(resource: str) -> AuditEvent:
            return AuditEvent(
                id="",
                time=0.0,
                type="gate.decision",
                subject=subject,
                subject_type=_kind(subject, client_id),
                client_id=client_id,
                decision="allow" if status == 200 else "deny",
                action=transport,
                resource=resource,
                status=status,
                reason=reason[:MAX_TEXT],
            )

        real = event(path[:MAX_TEXT])
        marked, tpl = template(event(_MARK)), template(real)
        # The path's place: the one occurrence of the resource key and the marker's encoding (no other
        # field's value can hold those bytes — the marker's str16 header, 0xDA 0x04, is not UTF-8 —
        # but it is counted, not assumed), proved by rebuilding the event with this very path from the
        # split, byte for byte.
        at = marked[1].find(_MARKED) if marked is not None and tpl is not None else -1
        split = None
        if marked is not None and tpl is not None and at >= 0 and marked[1].count(_MARKED) == 1:
            split = marked[1][: at + len(_RESOURCE_KEY)], marked[1][at + len(_MARKED) :]
        if (
            marked is None
            or tpl is None
            or split is None
            or (marked[0], split[0] + _pack_str(real.resource) + split[1]) != tpl
        ):
            # Not a layout stamp writes, or a split not proved: this event the plain way (and the
            # family's next one too: nothing is remembered for it).
            self._send(msgspec.structs.replace(real, id=new_id(), time=time.time()))
            return None
        before, after = split
        fixed = len(marked[0]) + len(before) + len(after) + STAMP_BYTES
        try:
            self.producer.check_size(AUDIT, real.type, fixed + len(_pack_str(real.resource)))
        except EventTooLarge as exc:
            self._refused(exc)
            return None
        size = len(before) + len(after) + sum(len(part) for part in family[1:])
        if len(self._templates) >= MAX_TEMPLATES or self._template_bytes + size > MAX_TEMPLATE_BYTES:
            # Many distinct families (subjects, reasons): start again rather than grow.
            self._templates.clear()
            self._template_bytes = 0
        known = self._templates[family] = _Family(
            self.producer.partition(AUDIT, subject), marked[0], before, after, fixed
        )
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
