"""How deep JSON values nest, measured without recursion.

A value nested past the interpreter's recursion limit must be measurable too (a checker that
recursed would fail on the very input it exists to refuse), so the walk keeps its own stack.
Used by the auth service's account attributes and the policy service's request values."""

from __future__ import annotations


def deeper_than(value: object, limit: int) -> bool:
    """Whether objects and arrays nest in ``value`` more than ``limit`` levels (``{}`` is one)."""
    return shape(value)[0] > limit


def shape(value: object) -> tuple[int, int]:
    """``value``'s depth (as ``deeper_than`` counts it) and its weight: every member and element
    below it, each counted once per level it sits at (``{"a": [1, 2]}``: ``a`` 1, each number 2: 5).
    The Cedar engine's cost to take in a value grows so (policy/authzen.py)."""
    deepest = weight = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        weight += len(children) * depth
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest, weight
