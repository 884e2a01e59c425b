"""Route tables: first match wins, {name} is one segment, unmatched paths get the default, and no
respelling of a routed path reaches a more permissive outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshauth.routes import RouteTable, load_routes, parse_routes

TABLE = """
default: authenticated
routes:
  - method: [GET, HEAD]
    path: /documents/{id}
    action: read
    resource: {type: Document, id: "{id}"}
  - method: DELETE
    path: /documents/{id}
    action: delete
    resource: {type: Document, id: "{id}"}
  - method: "*"
    path: /folders/{folder}/documents/{id}
    action: use
    resource: {type: Document, id: "{folder}/{id}"}
  - method: GET
    path: /documents/special
    action: never
    resource: {type: Document, id: special}
  - method: GET
    path: /reports/
    action: list
    resource: {type: Collection, id: reports}
  - method: GET
    path: /
    action: home
    resource: {type: Page, id: home}
"""


@pytest.fixture
def table() -> RouteTable:
    return parse_routes(TABLE)


def test_route_binds_placeholder(table: RouteTable) -> None:
    """``{id}`` takes the decoded segment; the resource id is the template filled in."""
    m = table.match("GET", "/documents/d1?download=1")
    assert (m.outcome, m.action, m.resource, m.route) == (
        "authorize",
        "read",
        {"type": "Document", "id": "d1"},
        "/documents/{id}",
    )
    assert table.match("GET", "/docu%6Dents/d%31").resource == {"type": "Document", "id": "d1"}


def test_method_selects_the_route(table: RouteTable) -> None:
    """Same path, other method: the route listing that method; any method for ``*``."""
    assert table.match("DELETE", "/documents/d1").action == "delete"
    assert table.match("HEAD", "/documents/d1").action == "read"
    assert table.match("get", "/documents/d1").action == "read"  # methods compared upper-cased
    assert table.match("PATCH", "/folders/f/documents/d").resource == {"type": "Document", "id": "f/d"}


def test_first_match_wins(table: RouteTable) -> None:
    """A literal route after a placeholder route of the same shape is never reached."""
    assert table.match("GET", "/documents/special").action == "read"


def test_known_path_with_unrouted_method_is_denied(table: RouteTable) -> None:
    """``default`` is for unknown paths: a routed path with another method is denied, not defaulted."""
    m = table.match("POST", "/documents/d1")
    assert (m.outcome, m.reason) == ("deny", "method_not_routed")


def test_placeholder_matches_exactly_one_segment(table: RouteTable) -> None:
    """``{id}`` matches neither zero nor two segments."""
    assert table.match("GET", "/documents/a/b").outcome == "allow"  # unmatched: default authenticated
    assert table.match("GET", "/documents").outcome == "allow"


def test_unmatched_path_gets_the_default() -> None:
    """``default: deny`` (also when absent) refuses with no_route; ``authenticated`` lets it pass."""
    routes = "routes:\n  - {method: GET, path: /a, action: r, resource: {type: T, id: a}}\n"
    m = parse_routes(routes).match("GET", "/b")
    assert (m.outcome, m.reason) == ("deny", "no_route")
    assert parse_routes("default: deny\n" + routes).match("GET", "/b").outcome == "deny"
    assert parse_routes("default: authenticated\n" + routes).match("GET", "/b").outcome == "allow"


@pytest.mark.parametrize(
    "target",
    [
        "/Documents/d1",
        "/DOCUMENTS/d1",
        "/documents/d1/",
        "/Documents/d1/",
        "/reports",
        "/%EF%BD%84ocuments/d1",  # fullwidth d: NFKC (as some upstreams normalise) gives /documents/d1
        "/%EF%BD%84OCUMENTS/d1/",
        "/docu%E2%85%BFents/d1",  # small roman numeral one thousand: NFKC m
    ],
)
def test_respelling_a_routed_path_is_denied_not_defaulted(table: RouteTable, target: str) -> None:
    """Case, Unicode compatibility forms (NFKC) and one trailing slash: an upstream may serve these as
    a routed path, so even with ``default: authenticated`` they are denied (path_not_canonical)
    rather than let through."""
    m = table.match("GET", target)
    assert (m.outcome, m.reason) == ("deny", "path_not_canonical")


SHADOWED = """
routes:
  - {method: DELETE, path: "/documents/{id}", action: delete, resource: {type: Document, id: "{id}"}}
  - {method: GET, path: /documents/admin, action: administer, resource: {type: Console, id: admin}}
  - {method: GET, path: "/documents/{id}", action: read, resource: {type: Document, id: "{id}"}}
"""


@pytest.mark.parametrize("target", ["/documents/ADMIN", "/documents/Admin", "/documents/%EF%BD%81dmin"])
def test_a_respelling_of_an_earlier_route_is_denied_not_taken_by_a_later_placeholder(target: str) -> None:
    """``GET /documents/ADMIN`` fell through the literal ``/documents/admin`` to ``/documents/{id}``
    and was authorized as ``read`` on Document ``ADMIN``; a case-insensitive upstream (Express and
    ASP.NET route so by default) or an NFKC-normalising one serves it as ``/documents/admin``. A path
    that only a respelling makes match a route listed before the one it matched is denied."""
    m = parse_routes(SHADOWED).match("GET", target)
    assert (m.outcome, m.reason) == ("deny", "path_not_canonical")


def test_routes_before_the_match_that_bind_the_path_as_spelled_do_not_deny_it() -> None:
    table = parse_routes(SHADOWED)
    assert table.match("GET", "/documents/admin").action == "administer"
    assert table.match("GET", "/documents/D1").resource == {"type": "Document", "id": "D1"}  # DELETE's path
    assert table.match("DELETE", "/documents/ADMIN").resource == {"type": "Document", "id": "ADMIN"}


def test_a_respelling_that_asks_the_same_question_or_takes_another_method_is_not_denied() -> None:
    """Only an earlier route that would take the request and ask another question makes a respelling
    a danger: a trailing-slash twin with the same action and resource is no other route, and a POST-only
    literal is not where an upstream sends a GET."""
    table = parse_routes(
        """
routes:
  - {method: GET, path: "/x/{id}/", action: read, resource: {type: Doc, id: "{id}"}}
  - {method: POST, path: /x/new, action: create, resource: {type: Doc, id: new}}
  - {method: GET, path: "/x/{id}", action: read, resource: {type: Doc, id: "{id}"}}
"""
    )
    assert table.match("GET", "/x/foo").resource == {"type": "Doc", "id": "foo"}
    assert table.match("GET", "/x/NEW").resource == {"type": "Doc", "id": "NEW"}
    assert table.match("POST", "/x/NEW").reason == "method_not_routed"  # listed for POST only as /x/new


def test_a_fragment_in_the_target_is_denied(table: RouteTable) -> None:
    """``DELETE /documents/mine#x`` (a raw ``#``, which no client sends): uvicorn's h11 server gives
    the app the path ``/documents/mine#x`` (the app deletes ``mine#x``) while hyper (granian) strips
    it — asking the policy about ``mine`` would authorize another resource than the one served."""
    for target in ("/documents/mine#x", "/documents/mine#x?y", "/reports#"):
        m = table.match("DELETE", target)
        assert (m.outcome, m.reason) == ("deny", "path_not_canonical"), target
    assert table.match("DELETE", "/documents/mine?q=#x").resource == {"type": "Document", "id": "mine"}


def test_trailing_slash_route_matches_only_with_the_slash(table: RouteTable) -> None:
    assert table.match("GET", "/reports/").action == "list"


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/documents/..%2fadmin", "path_not_canonical"),
        ("/documents/%2e%2e", "path_not_canonical"),
        ("/documents//d1", "path_not_canonical"),
        ("/documents/%00", "path_not_canonical"),
        ("/documents/%ff", "path_not_canonical"),
        ("/" + "x/" * 100, "path_too_long"),
        ("/" + "x" * 10_000, "path_too_long"),
    ],
)
def test_hostile_paths_are_denied_whatever_the_default(table: RouteTable, target: str, reason: str) -> None:
    m = table.match("GET", target)
    assert (m.outcome, m.reason) == ("deny", reason)


def test_root_route(table: RouteTable) -> None:
    assert table.match("GET", "/?q=1").action == "home"


def test_a_path_is_remembered_from_its_second_sighting(table: RouteTable) -> None:
    """Paths asked once (a cold gate: ids in paths) are matched and leave nothing behind; a path asked
    again is kept, and the same match answered from then on."""
    for i in range(1000):
        assert table.match("GET", f"/documents/c{i}").resource == {"type": "Document", "id": f"c{i}"}
    assert table._memo == {}
    first, second = table.match("GET", "/documents/d1"), table.match("GET", "/documents/d1")
    assert first == second and list(table._memo) == [("GET", "/documents/d1")]
    assert table.match("GET", "/documents/d1") is second


def test_memo_stays_bounded(table: RouteTable) -> None:
    """Many distinct paths (hostile or not), each asked twice, cannot grow the per-table memo without bound."""
    for i in range(20_000):
        table.match("GET", f"/documents/{i}")
        table.match("GET", f"/documents/{i}")
    assert 0 < len(table._memo) <= 8192
    assert table.match("GET", "/documents/19999").resource == {"type": "Document", "id": "19999"}


def test_long_targets_are_matched_but_not_remembered(table: RouteTable) -> None:
    """The memo's bound is a count; long targets (a hostile client's 4 KiB ids and query strings) are
    matched each time instead, so 8,192 entries stay a few MiB, not ~66 MiB."""
    table._memo.clear()
    long_id = "x" * 3000
    for i in range(100):
        for _ in range(2):  # twice: a short target would be kept from the second sighting
            m = table.match("GET", f"/documents/{long_id}{i}?q={'y' * 4000}")
            assert m.resource == {"type": "Document", "id": f"{long_id}{i}"}
    assert table._memo == {}


def test_long_methods_are_matched_but_not_remembered(table: RouteTable) -> None:
    """The method is half the memo's key, and granian (and Envoy over HTTP/2) pass methods of 50 KB: a
    client sending each of 8,192 short paths twice with such a method would hold ~400 MiB per worker. A
    method longer than any a route may name (32 characters) can only reach a ``*`` route: matched each
    time, not remembered."""
    table._memo.clear()
    for i in range(100):
        for _ in range(2):
            m = table.match("X" * 50_000, f"/folders/f/documents/d{i}")
            assert m.resource == {"type": "Document", "id": f"f/d{i}"}
            assert table.match("Y" * 50_000, f"/documents/d{i}").reason == "method_not_routed"
    assert table._memo == {}
    for _ in range(2):
        assert table.match("M" * 32, "/folders/f/documents/d").outcome == "authorize"
    assert list(table._memo) == [("M" * 32, "/folders/f/documents/d")]


def test_load_routes_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(TABLE)
    assert load_routes(path).match("DELETE", "/documents/x").action == "delete"


def test_example_route_file_loads() -> None:
    """The shipped example parses (the walkthrough test uses it against the demo data)."""
    example = Path(__file__).resolve().parent.parent / "examples" / "routes.yaml"
    table = load_routes(example)
    assert table.match("GET", "/documents/d1").action == "read"


@pytest.mark.parametrize(
    "query",
    ["_method=DELETE", "a=1&_method=delete", "_METHOD=PUT", "%5Fmethod=DELETE", "x=1;_method=DELETE", "_method"],
)
def test_a_method_override_parameter_is_refused_whatever_the_route(table: RouteTable, query: str) -> None:
    """Express ``methodOverride('_method')`` and Symfony serve ``POST /documents/d1?_method=DELETE`` as a
    DELETE: the gate would authorize the POST. Refused as the override headers are."""
    for target in (f"/documents/d1?{query}", f"/nowhere?{query}"):
        m = table.match("POST", target)
        assert (m.outcome, m.reason) == ("deny", "request_override"), target


def test_parameters_that_only_look_like_the_override_are_routed(table: RouteTable) -> None:
    for query in ("method=DELETE", "x_method=1", "q=_method", "sort=-method", "%zz=1"):
        assert table.match("GET", f"/documents/d1?{query}").outcome == "authorize", query
