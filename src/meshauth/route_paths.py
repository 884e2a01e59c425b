"""Request paths as a route table matches them: split into decoded segments, or refused (fail closed).

The gate decides for a path that another program — the upstream service — will serve, after its own
decoding and perhaps its own normalisation. A route table must therefore never match a spelling of a
path to a route (or to the ``default``) that is more permissive than the route the upstream will
serve it as. The rule here: match on what every upstream agrees on, and refuse every spelling on
which upstreams differ.

- The query string (from ``?``) takes no part. A ``#`` before it is refused (``path_not_canonical``):
  clients never send a fragment, and servers disagree on one — hyper (granian) strips it, h11
  (uvicorn's default) leaves ``/documents/d1#x`` in the path, so the app serves ``d1#x`` where the
  gate would have asked about ``d1``. Envoy refuses such requests itself by default.
- The path is split on ``/`` *before* percent-decoding; each segment is then decoded once, strictly
  (``%`` must be followed by two hex digits; the bytes must be UTF-8). Literal route segments are
  compared with the decoded segment, so ``/docu%6Dents/d%31`` is ``/documents/d1`` — what an
  upstream that decodes serves.
- Refused (``path_not_canonical``): a segment that decodes to something containing ``/`` or ``\\``
  (``%2F``: one upstream's segment is another's two), a control character (C0, DEL or C1) or NUL, a
  ``%`` followed by two hex digits after decoding (double encoding: an upstream that decodes twice
  sees another path), a dot segment ``.`` or ``..`` (also as ``%2e``), a ``;`` raw or decoded (path parameters: Tomcat,
  Jetty and Spring serve ``/documents/secret;x`` as ``/documents/secret`` and ``..;`` as ``..``;
  others keep the ``;`` — a route would bind ``secret;x`` and ask the policy about the wrong resource),
  an empty segment other than one trailing slash (``//``: merged by some upstreams), raw bytes outside
  visible ASCII (non-UTF-8 or unencoded non-ASCII), and a path not starting with ``/``.
- Refused (``path_too_long``): more than :data:`MAX_PATH_CHARS` characters or :data:`MAX_SEGMENTS`
  segments.

A trailing slash is kept as a final empty segment, which only a route written with a trailing slash
matches (see ``routes`` for what happens to near misses such as ``/documents/d1/``).
"""

from __future__ import annotations

import re

__all__ = ["MAX_PATH_CHARS", "MAX_SEGMENTS", "NOT_CANONICAL", "TOO_LONG", "PathRefused", "split_path"]

MAX_PATH_CHARS = 4096
MAX_SEGMENTS = 64
NOT_CANONICAL = "path_not_canonical"
TOO_LONG = "path_too_long"

_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]*\Z")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Control characters are C0, DEL *and* C1 (U+0080-U+009F, ``%C2%80``-``%C2%9F``): NEL (``%C2%85``) is a
# line break to ``str.splitlines()`` and whitespace to ``str.strip()``; only C0 and DEL were refused.
_FORBIDDEN_DECODED = re.compile(r"[\x00-\x1f\x7f-\x9f/\\;]|%[0-9A-Fa-f]{2}")


class PathRefused(ValueError):
    """The path is not matched at all; ``reason`` is :data:`NOT_CANONICAL` or :data:`TOO_LONG`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _decode(segment: str) -> str:
    if "%" not in segment:
        return segment
    if _BAD_ESCAPE.search(segment):
        raise PathRefused(NOT_CANONICAL)
    raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), segment).encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PathRefused(NOT_CANONICAL) from None


def split_path(target: str) -> tuple[str, ...]:
    """The decoded segments of a request target (``/a/b%20c?q`` → ``("a", "b c")``; ``/`` → ``()``).

    Raises :class:`PathRefused` for a spelling the module docstring lists."""
    query = target.find("?")
    path = target if query == -1 else target[:query]
    if "#" in path:  # a fragment before the query: stripped by some servers, part of the path to others
        raise PathRefused(NOT_CANONICAL)
    if len(path) > MAX_PATH_CHARS:
        raise PathRefused(TOO_LONG)
    if not path.startswith("/") or not _VISIBLE_ASCII.match(path):
        raise PathRefused(NOT_CANONICAL)
    if path == "/":
        return ()
    parts = path[1:].split("/")
    if len(parts) > MAX_SEGMENTS:
        raise PathRefused(TOO_LONG)
    if "%" not in path and ";" not in path and "\\" not in path:
        # The common spelling, decided at once (a gate that never sees a path twice splits every one):
        # nothing to decode, and visible ASCII without ``;`` or ``\`` leaves only empty and dot segments
        # for ``_decoded`` to refuse. tests/test_route_paths.py holds the two ways equal.
        if "" in parts[:-1] or "." in parts or ".." in parts:
            raise PathRefused(NOT_CANONICAL)
        return tuple(parts)
    return _decoded(parts)


def _decoded(parts: list[str]) -> tuple[str, ...]:
    """Each segment decoded once and checked: the general way (``split_path`` decides the common
    spelling without it)."""
    out: list[str] = []
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if not part:
            if i != last:
                raise PathRefused(NOT_CANONICAL)
            out.append("")
            continue
        segment = _decode(part)
        if _FORBIDDEN_DECODED.search(segment) or segment in (".", ".."):
            raise PathRefused(NOT_CANONICAL)
        out.append(segment)
    return tuple(out)
