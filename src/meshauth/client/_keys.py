"""Cache keys from a canonical encoding, never a delimiter-joined string.

Joining parts with a separator lets two different requests share a key when a part contains the
separator (OpenFGA's decision-cache poisoning, GHSA-8396-jffm-qx4w). Here the request is encoded as a
MessagePack array with dictionary keys sorted (``order="deterministic"``): each string carries its
own length, so no choice of ids or properties can make two different requests encode alike, and
equal requests (whatever the order of their properties) encode the same.

- :func:`request_key` — the question, without the state (single-flight, and the base of both keys);
- L1 key — ``(revision, entities_version, request_key)``: a tuple of ints and bytes, hashed by Python;
- :func:`l2_key` — the SHA-256 of the canonical encoding of that tuple, under a prefix: bounded
  length in Redis whatever the request's size.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from meshauth.wire import Resource, Subject

__all__ = ["STAGED_REVISION", "L1Key", "l2_key", "request_key", "staged_key"]

_encode = msgspec.msgpack.Encoder(order="deterministic").encode

L1Key = tuple[int, int | None, bytes]


def request_key(
    store: str,
    subject: Subject,
    action: str,
    resource: Resource,
    context: dict[str, Any] | None,
    *,
    item: int | None = None,
) -> bytes:
    """The question's canonical encoding; ``ValueError`` for one no encoder can write (an integer past
    64 bits, a lone surrogate, nesting past the recursion limit), as for any other bad argument —
    naming ``checks[item]`` when it is an item of ``check_many``."""
    try:
        return _encode(
            (
                store,
                subject.type,
                subject.id,
                subject.properties,
                action,
                resource.type,
                resource.id,
                resource.properties,
                context,
            )
        )
    except (OverflowError, RecursionError, UnicodeEncodeError) as exc:
        named = "" if item is None else f"checks[{item}]: "
        raise ValueError(f"{named}the check cannot be encoded: {exc}") from None


def l2_key(prefix: str, key: L1Key) -> bytes:
    try:
        encoded = _encode(key)
    except OverflowError:
        # A state past 64 bits (an ``at_least`` floor a caller made up): its numbers in hex, a key no
        # real state has (those are integers). Raised, it failed the whole batch's L2 lookup — every
        # check batched with it.
        encoded = _encode(tuple(hex(n) if isinstance(n, int) else n for n in key))
    return prefix.encode() + hashlib.sha256(encoded).hexdigest().encode()


STAGED_REVISION = -1  # no state is ever at a negative revision: a staged key never names a real one


def staged_key(version: int, on: int, entities_version: int, rkey: bytes) -> L1Key:
    """The L2 key of a staged answer (``_staging.py``): ``rkey`` asked of policy ``version`` on top
    of revision ``on`` with entities ``entities_version``. Shaped as an L1 key, under a revision no
    state has, with the staged identity encoded (canonically) into its question part."""
    return (STAGED_REVISION, entities_version, _encode(("staged", version, on, rkey)))
