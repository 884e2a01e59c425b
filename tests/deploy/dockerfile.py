"""Just enough of a Dockerfile parser for the image test: stages, their instructions, ENV values.

Joins continuation lines, drops comments and parser directives, and splits each stage's instructions
into (keyword, argument text). JSON-form arguments (``CMD ["a", "b"]``) are decoded by ``exec_form``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        """The stage's ENV settings in the ``KEY=value`` form (values unquoted; no expansion)."""
        values: dict[str, str] = {}
        for arg in self.all("ENV"):
            for item in shlex.split(arg):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"ENV {arg!r}: only the KEY=value form is read here")
                values[key] = value
        return values


def exec_form(arg: str) -> list[str]:
    """A JSON-array argument (``["meshauth", "serve"]``); anything else is refused, not guessed at."""
    value = json.loads(arg)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"not a JSON array of strings: {arg}")
    return value


def logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        current += stripped
        if current:
            lines.append(current)
        current = ""
    if current:
        lines.append(current.strip())
    return lines


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages in order)."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = words[0]
            for key, value in args.items():
                base = base.replace("${" + key + "}", value)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base=base, name=name))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"only ARG may come before the first FROM, not {keyword}")
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages
