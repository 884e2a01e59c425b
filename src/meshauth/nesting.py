"""How deep JSON values nest, measured without recursion.

A value nested past the interpreter's recursion limit must be measurable too (a checker that
recursed would fail on the very input it exists to refuse), so the walk keeps its own stack.
Used by the auth service's account attributes and the policy service's request values."""

from __future__ import annotations

from typing import Any


def deeper_than(value: object, limit: int) -> bool:
    """Whether objects and arrays nest in ``value`` more than ``limit`` levels (``{}`` is one)."""
    return shape(value)[0] > limit


def shape(value: object) -> tuple[int, int]:
    """``value``'s depth (as ``deeper_than`` counts it) and its weight: every member and element
    below it, each counted once per level it sits at (``{"a": [1, 2]}``: ``a`` 1, each number 2: 5).
    The Cedar engine's cost to take in a value grows so (policy/authzen.py).

    Walked a level at a time, by exact type (JSON decoders build plain dicts and lists): it runs for
    every decision that carries a context, and a walk of (item, depth) tuples through a generator cost
    ~24k instructions per check of the gate's context (bench/adhoc/stop24/policy_instr.py)."""
    if type(value) is not dict and type(value) is not list:
        return 0, 0
    deepest = weight = 0
    level: list[Any] = [value]
    while level:
        deepest += 1
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            weight += len(children) * deepest
            for child in children:
                kind = type(child)
                if kind is dict or kind is list:
                    below.append(child)
        level = below
    return deepest, weight
