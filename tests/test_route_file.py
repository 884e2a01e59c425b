"""Route files: every problem is an error naming the line; YAML bombs never reach the composer."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshauth.route_file import MAX_FILE_BYTES, RouteTableError
from meshauth.routes import load_routes, parse_routes

ROUTE = "  - method: GET\n    path: /documents/{id}\n    action: read\n    resource: {type: Document, id: '{id}'}\n"


def error(text: str | bytes) -> str:
    with pytest.raises(RouteTableError) as caught:
        parse_routes(text, source="r.yaml")
    return str(caught.value)


def test_a_valid_file_parses() -> None:
    table = parse_routes("routes:\n" + ROUTE)
    assert table.default == "deny" and len(table.routes) == 1 and table.routes[0].line == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "r.yaml:1: the route file is empty"),
        ("routes: {}\n", "r.yaml:1: routes must be a list"),
        ("default: deny\n", "r.yaml:1: the route file needs a `routes:` list"),
        ("routes: []\ndefault: allow\n", "r.yaml:2: default must be deny or authenticated"),
        ("routes: []\nextra: 1\n", "r.yaml:2: the route file: unknown key 'extra'"),
        ("routes:\n" + ROUTE + "  - method: GET\n    path: /x\n", "r.yaml:6: a route needs 'action'"),
        ("routes:\n" + ROUTE.replace("GET", "get"), "r.yaml:2: method 'get' is not an upper-case HTTP method"),
        ("routes:\n" + ROUTE.replace("GET", "[GET, '*']"), 'r.yaml:2: method: "*" stands alone'),
        (
            "routes:\n" + ROUTE.replace("/documents/{id}", "documents/{id}"),
            "r.yaml:3: path 'documents/{id}' must start with /",
        ),
        ("routes:\n" + ROUTE.replace("/documents/{id}", "/documents/x{id}"), "r.yaml:3: path segment 'x{id}'"),
        ("routes:\n" + ROUTE.replace("/documents/{id}", "/a/../{id}"), "r.yaml:3: path segment '..'"),
        ("routes:\n" + ROUTE.replace("/documents/{id}", "/a//{id}"), "r.yaml:3: path segment ''"),
        ("routes:\n" + ROUTE.replace("/documents/{id}", "/a%2f/{id}"), "r.yaml:3: path segment 'a%2f'"),
        ("routes:\n" + ROUTE.replace("/documents/{id}", "/{id}/{id}"), "r.yaml:3: path: {id} appears twice"),
        (
            "routes:\n" + ROUTE.replace("id: '{id}'", "id: '{other}'"),
            "r.yaml:5: resource id: {other} is not a placeholder",
        ),
        ("routes:\n" + ROUTE.replace("id: '{id}'", "id: '{id'"), "r.yaml:5: resource id: braces only"),
        ("routes:\n" + ROUTE.replace("id: '{id}'", "id: 42"), "r.yaml:5: resource id must be a string"),
        ("routes:\n" + ROUTE.replace("type: Document", "type: '{id}'"), "r.yaml:5: resource type is a constant"),
        ("routes:\n" + ROUTE.replace("action: read", "action: ''"), "r.yaml:4: action must be 1-256 printable"),
        (
            "routes:\n" + ROUTE.replace("action: read", "action: read\n    action: write"),
            "r.yaml:5: a route: 'action' given twice",
        ),
        ("routes:\n  - method: GET\n    path: [\n", "r.yaml:4: not valid YAML"),
        ("routes: []\n---\nroutes: []\n", "r.yaml:2: one YAML document only"),
    ],
)
def test_errors_name_the_line(text: str, expected: str) -> None:
    assert error(text).startswith(expected), error(text)


def test_billion_laughs_is_refused_before_expansion() -> None:
    """Anchors and aliases are refused outright (the composer never sees them)."""
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    bomb += "".join(f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    assert error(bomb) == "r.yaml:1: anchors (&a) are not allowed in a route file"
    assert error("routes: *x\n").startswith("r.yaml:1: aliases (*x) are not allowed")


def test_tags_are_refused() -> None:
    assert "tags (tag:yaml.org,2002:python/object/apply:os.system)" in error("!!python/object/apply:os.system [id]\n")
    assert "tags (!custom)" in error("routes: !custom []\n")


def test_deep_nesting_is_refused_before_composing() -> None:
    """100,000 nested lists would overflow the recursive composer: refused by depth while scanning."""
    assert "nested deeper than 8 levels" in error("routes: " + "[" * 100_000 + "]" * 100_000)


def test_huge_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"routes: []\n" + b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    with pytest.raises(RouteTableError, match="over 1048576 bytes"):
        load_routes(big)


def test_many_nodes_are_refused() -> None:
    assert "more than 200000 YAML nodes" in error("routes: [" + "1," * 200_001 + "]")


def test_non_utf8_and_nul_are_refused_with_a_line() -> None:
    assert error(b"routes: []\n# \xff\n").startswith("r.yaml:2: not UTF-8")
    assert error("routes: []\nx: \x00\n").startswith("r.yaml:2: not valid YAML")


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RouteTableError, match="cannot read the route file"):
        load_routes(tmp_path / "absent.yaml")


TWO = "  - method: GET\n    path: /o/{org}/{doc}\n    action: read\n    resource: {type: Document, id: 'ID'}\n"


@pytest.mark.parametrize("template", ["{org}{doc}", "{org}-{doc}", "{org}:{doc}", "x{org} {doc}y"])
def test_placeholders_not_parted_by_a_slash_are_refused(template: str) -> None:
    """A segment holds any character but ``/``: ``{org}-{doc}`` is ``a-b-c`` for ``/o/a-b/c`` and for
    ``/o/a/b-c`` — two resources the policy would see as one."""
    assert error("routes:\n" + TWO.replace("ID", template)).startswith(
        "r.yaml:5: resource id: {org} and {doc} must be parted by a /"
    )


def test_placeholders_parted_by_a_slash_are_one_resource_each() -> None:
    table = parse_routes("routes:\n" + TWO.replace("ID", "{org}/{doc}"))
    assert table.match("GET", "/o/a-b/c").resource == {"type": "Document", "id": "a-b/c"}
    assert table.match("GET", "/o/a/b-c").resource == {"type": "Document", "id": "a/b-c"}
    assert parse_routes("routes:\n" + TWO.replace("ID", "org:{org}/doc:{doc}")).routes
