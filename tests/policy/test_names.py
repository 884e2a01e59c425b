"""``names.type_problem`` against Cedar: a type name is refused at the edge exactly when Cedar refuses
to build a request with it (too strict is a 400 for a question Cedar answers; too lax a request error)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshauth.policy import cedar
from meshauth.policy.names import type_problem

_PERMIT_ALL = cedar.parse_policies("permit(principal, action, resource);")
_NO_ENTITIES = cedar.parse_entities("[]", None)


def cedar_takes(etype: str) -> bool:
    request = cedar.request((etype, "x"), ("Action", "read"), ("R", "r"), None)
    (result,) = cedar.authorize([request], _PERMIT_ALL, _NO_ENTITIES, None)
    return result.decision == "Allow"


def test_reserved_words_and_cedar_prefix_as_cedar_says() -> None:
    for name in ("__cedar", "A::__cedar", "__cedar::A", "if", "App::has", "true", "in", "is", "like"):
        assert type_problem(name) is not None and not cedar_takes(name), name
    for name in ("x__cedar", "__cedarx", "__cedar_x", "A::x__cedar", "__Cedar", "_", "principal", "Action"):
        assert type_problem(name) is None and cedar_takes(name), name


_PART = st.one_of(
    st.sampled_from(["__cedar", "x__cedar", "__cedarx", "if", "then", "has", "is", "in", "true", "_", "A", "a1"]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PART, min_size=1, max_size=3))
def test_type_names_refused_exactly_when_cedar_refuses(parts: list[str]) -> None:
    name = "::".join(parts)
    assert (type_problem(name) is None) == cedar_takes(name), name
