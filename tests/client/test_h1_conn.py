"""What ``H1Transport`` is handed is checked before a byte is written (``_h1_conn.Target`` and
``head``): each bad URL or header a ``TransportError`` naming it — never a ``UnicodeEncodeError`` or a
``ValueError`` past the Transport contract, never a request line or header that is not one line, and
never a silently dropped credential."""

from __future__ import annotations

import pytest

from meshauth.client import H1Transport, TransportError
from meshauth.client._h1_conn import Target, head


def test_a_well_formed_head() -> None:
    t = Target("http://[::1]:8090/stores/s/access/v1/evaluation?x=1")
    assert t.key == ("::1", 8090)
    assert b"".join(head(t, {"content-type": "application/json", "x-tab": "a\tb é"}, 7)) == (
        b"POST /stores/s/access/v1/evaluation?x=1 HTTP/1.1\r\nHost: [::1]:8090\r\n"
        b"content-type: application/json\r\nx-tab: a\tb \xe9\r\nContent-Length: 7\r\n\r\n"
    )
    assert Target("http://policy").key == ("policy", 80)
    assert Target("http://policy").prefix.startswith(b"POST / HTTP/1.1\r\n")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://user:secret@policy:8090/x", "credentials"),
        ("http://user@policy/x", "credentials"),
        ("https://policy/x", "not an http://"),
        ("http:///x", "not an http://"),
        ("http://policy:99999/x", "not a valid URL"),
        ("http://policy:port/x", "not a valid URL"),
        ("http://[::1/x", "not a valid URL"),
        ("http://policy/a b", "visible ASCII"),
        ("http://policy/caf\u00e9", "visible ASCII"),
        ("http://b\u00fccher.example/x", "visible ASCII"),
        ("http://policy/x\r\nInjected: 1", "visible ASCII"),
    ],
)
async def test_a_bad_url_is_a_transport_error_naming_it(url: str, why: str) -> None:
    t = H1Transport()
    with pytest.raises(TransportError, match=why):
        await t.post(url, b"", {}, timeout=1)
    assert not t.connections
    await t.aclose()


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"x": "caf\u00e9 \u2603"}, "outside latin-1"),
        ({"authorization": "Bearer \U0001f600"}, "outside latin-1"),
        ({"x": "a\r\nInjected: 1"}, "line break"),
        ({"x": "a\nb"}, "line break"),
        ({"x": "a\x00b"}, "control character"),
        ({"x": "a\x7fb"}, "control character"),
        ({"bad name": "v"}, "header name"),
        ({"x:y": "v"}, "header name"),
        ({"": "v"}, "header name"),
        ({"\u00e9": "v"}, "header name"),
        ({"Host": "evil"}, "header name"),
        ({"content-length": "0"}, "header name"),
        ({"Transfer-Encoding": "chunked"}, "header name"),
    ],
)
async def test_a_bad_header_is_a_transport_error_naming_it(headers: dict[str, str], why: str) -> None:
    t = H1Transport()
    with pytest.raises(TransportError, match=why):
        await t.post("http://127.0.0.1:9/x", b"", headers, timeout=1)
    assert not t.connections  # refused before connecting
    await t.aclose()


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan")])
async def test_no_time_left_is_a_timeout_before_connecting(timeout: float) -> None:
    t = H1Transport()
    with pytest.raises(TimeoutError):
        await t.post("http://127.0.0.1:9/x", b"", {}, timeout=timeout)
    assert not t.connections
    await t.aclose()
