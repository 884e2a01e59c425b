from __future__ import annotations

from typing import Any

from meshauth.nesting import deeper_than, shape


def _chain(levels: int) -> Any:
    value: Any = {}
    for n in range(levels - 1):
        value = [value] if n % 2 else {"k": value}
    return value


def test_objects_and_arrays_each_count_one_level() -> None:
    assert not deeper_than({}, 1)
    assert deeper_than({"a": {}}, 1)
    assert not deeper_than({"a": [1, "x", None]}, 2)
    assert deeper_than({"a": [1, [2]]}, 2)
    assert not deeper_than("scalar", 0) and not deeper_than(7, 0)


def test_the_deepest_branch_counts_not_the_first() -> None:
    value = {"shallow": 1, "list": [1, 2, {"deep": [_chain(10)]}]}
    assert deeper_than(value, 13)  # 1 + 1 + 1 + 1 + 10
    assert not deeper_than(value, 14)


def test_a_value_past_the_recursion_limit_is_measured() -> None:
    value = _chain(100_000)
    assert deeper_than(value, 16)
    assert not deeper_than(value, 100_000)


def test_shape_weighs_every_value_once_per_level_it_sits_at() -> None:
    assert shape({}) == (1, 0)
    assert shape({"a": [1, 2]}) == (2, 1 + 2 + 2)
    assert shape({"a": {"b": {}}, "c": "x"}) == (3, 1 + 1 + 2)
    assert shape("scalar") == (0, 0)
    assert shape([[], [[]]]) == (3, 1 + 1 + 2)


def test_shape_agrees_with_deeper_than() -> None:
    value = {"shallow": 1, "list": [1, 2, {"deep": [_chain(10)]}]}
    depth, _ = shape(value)
    assert deeper_than(value, depth - 1)
    assert not deeper_than(value, depth)
    assert shape(_chain(100_000)) == (100_000, sum(range(100_000)))
