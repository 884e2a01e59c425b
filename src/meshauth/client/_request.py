"""A check as it travels the client (:class:`Pending`), built from the caller's arguments with
precise errors, and rebuilt from its canonical key (cache warming asks hot questions again)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec

from meshauth import wire

__all__ = ["Pending", "checked", "entity", "from_key"]


class Pending(msgspec.Struct, gc=False):
    subject: wire.Subject
    action: str
    resource: wire.Resource
    context: dict[str, Any] | None
    deadline: float  # event-loop time


def entity(value: object, cls: type[wire.Subject] | type[wire.Resource], name: str) -> Any:
    if isinstance(value, cls):
        out: Any = value
    elif isinstance(value, Mapping):
        try:
            out = msgspec.convert(dict(value), cls)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{name}: {exc}") from None
    else:
        raise TypeError(f"{name} must be a {cls.__name__} or a mapping with 'type' and 'id'")
    if not out.type or not out.id:
        raise ValueError(f"{name}: type and id must be non-empty")
    return out


def checked(
    subject: object, action: object, resource: object, context: object, timeout: object, default_timeout: float
) -> Pending:
    """A check's arguments, validated (``ValueError``/``TypeError`` naming the argument), with its
    deadline on the running loop's clock."""
    if timeout is None:
        budget = default_timeout
    elif isinstance(timeout, int | float) and 0 <= timeout < float("inf"):
        budget = float(timeout)
    else:
        raise ValueError("timeout must be a finite number of seconds >= 0")
    if not isinstance(action, str) or not action:
        raise ValueError("action must be a non-empty string")
    if context is not None and not isinstance(context, Mapping):
        raise TypeError("context must be a mapping or None")
    return Pending(
        entity(subject, wire.Subject, "subject"),
        action,
        entity(resource, wire.Resource, "resource"),
        None if context is None else dict(context),
        asyncio.get_running_loop().time() + budget,
    )


class _Key(msgspec.Struct, array_like=True):
    """The layout of ``_keys.request_key`` (keep the two in step)."""

    store: str
    subject_type: str
    subject_id: str
    subject_properties: dict[str, Any] | None
    action: str
    resource_type: str
    resource_id: str
    resource_properties: dict[str, Any] | None
    context: dict[str, Any] | None


_decode_key = msgspec.msgpack.Decoder(_Key).decode


def from_key(store: str, rkey: bytes, deadline: float) -> Pending | None:
    """The question a request key encodes, if it is a well-formed one for ``store`` (keys can come
    from a shared Redis: anything else is None, never an exception)."""
    try:
        k = _decode_key(rkey)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if k.store != store or not (k.subject_type and k.subject_id and k.action and k.resource_type and k.resource_id):
        return None
    return Pending(
        wire.Subject(k.subject_type, k.subject_id, k.subject_properties),
        k.action,
        wire.Resource(k.resource_type, k.resource_id, k.resource_properties),
        k.context,
        deadline,
    )
