"""Request paths become route templates, never raw paths, so the label set stays bounded."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from meshauth.observability import routes
from meshauth.observability.routes import OTHER, RouteLabels, templates_of


async def _ok(_request: object) -> Response:
    return Response()


def test_paths_map_to_their_templates() -> None:
    labels = RouteLabels(["/healthz", "/admin/users/{username}", "/stores/{store}/x"], prefixes=["/ext_authz"])
    assert labels("/healthz") == "/healthz"
    assert labels("/admin/users/alice") == "/admin/users/{username}"
    assert labels("/stores/s1/x") == "/stores/{store}/x"
    assert labels("/ext_authz") == "/ext_authz"
    assert labels("/ext_authz/orders/1") == "/ext_authz"
    assert labels("/ext_authzz") == OTHER
    assert labels("/admin/users/alice/extra") == OTHER
    assert labels("/healthz/") == OTHER


def test_a_flood_of_distinct_paths_stays_within_the_label_set() -> None:
    """Ten thousand distinct paths give labels from the closed set, and the cache stays bounded."""
    labels = RouteLabels(["/admin/users/{username}"], prefixes=["/ext_authz"])
    seen = {labels(p) for i in range(10_000) for p in (f"/x/{i}", f"/admin/users/u{i}", f"/ext_authz/{i}")}
    assert seen == {OTHER, "/admin/users/{username}", "/ext_authz"}
    assert seen <= labels.labels
    assert len(labels._cache) <= routes.MAX_CACHED_PATHS


def test_hostile_paths_are_just_other() -> None:
    labels = RouteLabels(["/a/{b}"])
    for path in ("", "\x00", "/a/\x00/b", "/" + "é" * 100_000, "//", "/a/" + "x" * 1_000_000):
        assert labels(path) in {OTHER, "/a/{b}"}
    assert labels("/a/\x00") == "/a/{b}"


def test_templates_are_found_in_wrapped_starlette_apps() -> None:
    """Route templates of a Starlette app reached through ``.router`` or ``.app`` (AuthApp, DecisionFront)."""

    class Wrapper:
        def __init__(self, app: Starlette) -> None:
            self.app = app

    app = Starlette(routes=[Route("/healthz", _ok), Route("/admin/clients/{client_id}", _ok)])
    assert sorted(templates_of(Wrapper(app))) == ["/admin/clients/{client_id}", "/healthz"]
    assert templates_of(object()) == []
