"""Where each setting came from, its effective value with secrets masked, and its problems, one line each.

``meshauth config check`` prints the first two; every CLI entry point prints the problems (exit status 2)
instead of a traceback. Values are read from the same sources, with the same precedence, as
``Settings()`` reads them — explicit arguments, the environment, the TOML file named by
``MESHAUTH_CONFIG_FILE``, the defaults — using pydantic-settings' own environment source, so a report
names exactly the variable or file key an operator has to change. Reading them again here, instead of
parsing pydantic's exception, is what lets every problem be listed at once: pydantic-settings stops at
the first list value that is not JSON, and its messages name fields, not variables.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from meshauth.config import Settings, config_file_problem
from meshauth.config_display import accepted_form, display, show

CONFIG_FILE_VARIABLE = "MESHAUTH_CONFIG_FILE"
# MESHAUTH_* variables that are read directly, not settings: not reported as unknown.
NOT_SETTINGS = frozenset(
    {CONFIG_FILE_VARIABLE, "MESHAUTH_POLICY_URL", "MESHAUTH_TEST_POSTGRES_URL", "MESHAUTH_REQUIRE_POSTGRES"}
)
PREFIX = "meshauth: configuration error: "

Kind = Literal["default", "file", "environment", "argument"]


@dataclass(frozen=True)
class Origin:
    kind: Kind
    where: str = ""  # the variable's name, or the file's path

    def describe(self) -> str:
        return f"{self.kind} {self.where}" if self.where else self.kind

    def names(self, key: str) -> str:
        """How a problem message names the setting: the variable, or the key and its file."""
        if self.kind == "environment":
            return self.where
        if self.kind == "file":
            return f"{key} in {self.where}"
        return key


@dataclass
class Sources:
    raw: dict[str, Any] = field(default_factory=dict)  # field name -> value as read, before validation
    origins: dict[str, Origin] = field(default_factory=dict)  # field name -> where ``raw`` came from
    keys: dict[str, str] = field(default_factory=dict)  # field name -> the key as the file spells it
    problems: list[str] = field(default_factory=list)  # found while reading (file, JSON, unknown keys)
    unknown_variables: list[str] = field(default_factory=list)


def read_sources(overrides: Mapping[str, object] | None = None) -> Sources:
    """Every setting that is not at its default, with its origin; lower-precedence sources first."""
    found = Sources()
    _read_file(found)
    _read_environment(found)
    for key, value in (overrides or {}).items():
        name = _field_for_key(key) or key
        found.raw[name] = value
        found.origins[name] = Origin("argument")
        found.keys[name] = key
    return found


def settings_problems(overrides: Mapping[str, object] | None = None) -> list[str]:
    """One line per problem with the configuration; empty when ``Settings()`` would load."""
    found = read_sources(overrides)
    return found.problems + _validation_problems(found)


class _GivenValues(Settings):
    """Settings validated from exactly the values given: every constraint and validator, no sources."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _validation_problems(found: Sources) -> list[str]:
    try:
        _GivenValues(**found.raw)
    except ValidationError as exc:
        return [_problem_line(found, error) for error in exc.errors()]
    return []


def _problem_line(found: Sources, error: Any) -> str:
    loc = error.get("loc") or ("",)
    name = _field_for_key(str(loc[0])) or str(loc[0])
    origin = found.origins.get(name, Origin("default"))
    key = found.keys.get(name, name)
    info = Settings.model_fields.get(name)
    value = found.raw.get(name)
    shown = show(name, value) if info is not None else repr(value)
    if error.get("type") == "value_error":
        # Our own validators word the whole message, accepted form included.
        what = str(error.get("ctx", {}).get("error") or error["msg"])
        if info is not None and name not in found.raw:  # a default another setting does not go with
            return f"{PREFIX}MESHAUTH_{name.upper()} is unset (default {show(name, info.default)}): {what}"
        return f"{PREFIX}{origin.names(key)}={shown}: {what}"
    what = _lower_first(str(error["msg"]))
    expected = f"; expected {accepted_form(info)}" if info is not None else ""
    return f"{PREFIX}{origin.names(key)}={shown}: {what}{expected}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


# --- reading the sources ------------------------------------------------------------------------


def _field_for_key(key: str) -> str | None:
    """The field a file key, argument or error location names (its own name or one of its aliases)."""
    if key in Settings.model_fields:
        return key
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None)
        if choices is not None and key in choices:
            return name
        if alias == key:
            return name
    return None


def _read_file(found: Sources) -> None:
    path = os.environ.get(CONFIG_FILE_VARIABLE)
    if not path:
        return
    problem = config_file_problem(path)
    if problem is not None:
        found.problems.append(f"{PREFIX}{CONFIG_FILE_VARIABLE}={path!r}: {problem}")
        return
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        found.problems.append(f"{PREFIX}{CONFIG_FILE_VARIABLE}={path!r}: cannot be read ({exc.strerror})")
        return
    except UnicodeDecodeError as exc:
        found.problems.append(
            f"{PREFIX}{CONFIG_FILE_VARIABLE}={path!r}: not UTF-8 (byte {exc.start}); a TOML file is UTF-8 text"
        )
        return
    except tomllib.TOMLDecodeError as exc:
        found.problems.append(f"{PREFIX}{CONFIG_FILE_VARIABLE}={path!r}: not valid TOML ({exc})")
        return
    except RecursionError:
        found.problems.append(f"{PREFIX}{CONFIG_FILE_VARIABLE}={path!r}: not valid TOML (nested too deeply)")
        return
    for key, value in data.items():
        name = _field_for_key(key)
        if name is None:
            found.problems.append(
                f"{PREFIX}{key} in {path}: unknown setting; expected one of the names `meshauth config check` lists"
            )
            continue
        found.raw[name] = value
        found.origins[name] = Origin("file", path)
        found.keys[name] = key


def _read_environment(found: Sources) -> None:
    source = EnvSettingsSource(Settings)
    actual = {k.lower(): k for k in os.environ}
    claimed: set[str] = set()
    for name, info in Settings.model_fields.items():
        # The variable names Settings() looks up for this field, in its order (aliases, then prefix + name).
        env_names = [env_name for _key, env_name, _complex in source._extract_field_info(info, name)]
        claimed.update(n.lower() for n in env_names)
        value, _key, is_complex = source.get_field_value(info, name)
        if value is None:
            continue
        variable = next((actual.get(n.lower(), n) for n in env_names if source.env_vars.get(n) is not None), name)
        origin = Origin("environment", variable)
        found.origins[name] = origin
        found.keys[name] = name
        try:
            found.raw[name] = source.prepare_field_value(name, info, value, is_complex)
        except ValueError:
            found.raw.pop(name, None)
            found.problems.append(
                f"{PREFIX}{variable}={show(name, value)}: not valid JSON; expected {accepted_form(info)}"
            )
    found.unknown_variables = sorted(
        original
        for lower, original in actual.items()
        if lower.startswith("meshauth_") and lower not in claimed and original.upper() not in NOT_SETTINGS
    )


@dataclass(frozen=True)
class Row:
    name: str
    value: str
    origin: Origin
    invalid: bool = False


@dataclass(frozen=True)
class Report:
    rows: list[Row]
    problems: list[str]
    unknown_variables: list[str]


def check(overrides: Mapping[str, object] | None = None) -> Report:
    """The effective configuration (or, where invalid, the value as given) with each value's origin."""
    found = read_sources(overrides)
    problems = found.problems + _validation_problems(found)
    settings = None
    if not problems:
        settings = Settings(**dict(overrides or {}))  # type: ignore[arg-type]
    invalid = {name for name in Settings.model_fields if any(_mentions(p, found, name) for p in problems)}
    rows = []
    for name, info in Settings.model_fields.items():
        if settings is not None:
            value = getattr(settings, name)
        else:
            value = found.raw.get(name, info.get_default(call_default_factory=True))
        rows.append(Row(name, display(name, value), found.origins.get(name, Origin("default")), name in invalid))
    return Report(rows, problems, found.unknown_variables)


def _mentions(problem: str, found: Sources, name: str) -> bool:
    origin = found.origins.get(name)
    if origin is None:
        return False
    return f"{PREFIX}{origin.names(found.keys.get(name, name))}=" in problem
