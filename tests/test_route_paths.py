"""Request paths as route tables see them: decoded segments, or refused where upstreams differ."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from meshauth import route_paths
from meshauth.route_paths import MAX_PATH_CHARS, MAX_SEGMENTS, NOT_CANONICAL, TOO_LONG, PathRefused, split_path


@pytest.mark.parametrize(
    ("target", "segments"),
    [
        ("/", ()),
        ("/documents/d1", ("documents", "d1")),
        ("/documents/d1?x=/admin&y=..", ("documents", "d1")),
        ("/documents/d1?q=#frag", ("documents", "d1")),  # a "#" in the query: every server's path is /documents/d1
        ("/docu%6Dents/d%31", ("documents", "d1")),
        ("/documents/a%20b", ("documents", "a b")),
        ("/documents/%C3%A9", ("documents", "é")),
        ("/documents/100%25", ("documents", "100%")),
        ("/documents/", ("documents", "")),
    ],
)
def test_segments(target: str, segments: tuple[str, ...]) -> None:
    """The query string takes no part; each segment is decoded once."""
    assert split_path(target) == segments


@pytest.mark.parametrize(
    "target",
    [
        "documents/d1",  # not absolute
        "/documents//d1",  # empty segment: merged by some upstreams
        "//documents/d1",
        "/documents/../admin",
        "/documents/./d1",
        "/documents/%2e%2e/admin",  # encoded dot segment
        "/documents/%2E",
        "/documents/..;/admin",  # Tomcat reads ..; as ..
        "/documents/..%2fadmin",  # encoded slash: one upstream's segment is another's two
        "/documents/a%5cb",  # backslash: a separator to some servers
        "/documents/a\\b",
        "/documents/%00",  # NUL
        "/documents/a\x00b",
        "/documents/%0d%0a",  # CR LF
        "/documents/%7f",  # DEL
        "/documents/secret%C2%85",  # NEL, a C1 control: Python's str.strip() and split() take it for space
        "/documents/%C2%80",  # the C1 range's ends
        "/documents/%C2%9F",
        "/documents/%ff",  # not UTF-8
        "/documents/%c3",  # truncated UTF-8
        "/documents/\xe9",  # raw non-ASCII (latin-1 bytes as ASGI passes them)
        "/documents/%zz",  # a bad escape
        "/documents/%4",
        "/documents/%252e%252e",  # double encoding: an upstream decoding twice sees ..
        "/documents/a b",  # raw space
        "/documents/secret;x",  # path parameters: Tomcat, Jetty and Spring serve /documents/secret
        "/documents/secret;",
        "/documents/a;v=1",
        "/documents;v=1/secret",
        "/documents/secret%3Bx",  # some upstreams decode before they strip parameters
        "/documents/d1#x",  # a fragment (never sent by a client): hyper strips it, h11 (uvicorn) serves id d1#x
        "/documents/d1#/../admin?q",
        "/documents/#",
    ],
)
def test_refused_spellings(target: str) -> None:
    """A spelling on which upstreams disagree is refused, so no route can be reached through it."""
    with pytest.raises(PathRefused) as caught:
        split_path(target)
    assert caught.value.reason == NOT_CANONICAL


def test_very_long_paths_are_refused() -> None:
    """More characters or segments than the limits: path_too_long, before any per-segment work."""
    with pytest.raises(PathRefused) as long_path:
        split_path("/" + "a" * MAX_PATH_CHARS)
    assert long_path.value.reason == TOO_LONG
    with pytest.raises(PathRefused) as many:
        split_path("/a" * (MAX_SEGMENTS + 1))
    assert many.value.reason == TOO_LONG
    assert len(split_path("/a" * MAX_SEGMENTS)) == MAX_SEGMENTS


def test_a_long_query_string_does_not_count() -> None:
    """Only the path is limited: a long query string is no reason to refuse."""
    assert split_path("/a?" + "q" * (2 * MAX_PATH_CHARS)) == ("a",)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.text(alphabet="a.%;\\2fF5cCE:@-_~", max_size=6), min_size=1, max_size=5))
def test_the_common_spelling_is_decided_as_the_general_way_decides_it(segments: list[str]) -> None:
    """``split_path`` decides a path without ``%``, ``;`` or ``\\`` at once; every path it takes (or
    refuses) is taken (or refused) by ``_decoded``, the general way, alike."""
    path = "/" + "/".join(segments)
    assume(path != "/")  # () before either way is reached

    def outcome(split: Callable[[], tuple[str, ...]]) -> tuple[str, ...] | str:
        try:
            return split()
        except PathRefused as exc:
            return exc.reason

    assert outcome(lambda: split_path(path)) == outcome(lambda: route_paths._decoded(path[1:].split("/")))
