"""Loading settings for a command or a service: every problem listed at once, or the settings.

Kept apart from ``config`` (the settings themselves) because listing the problems needs
``config_report``, which reads ``config``'s fields: here both are imported without a cycle.
"""

from __future__ import annotations

from meshauth.config import Settings
from meshauth.config_report import settings_problems


class ConfigError(Exception):
    """The settings cannot be loaded. ``problems`` holds one printable line per problem, each naming the
    variable (or file key) to change, what is wrong with it and the accepted form."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings(**overrides: object) -> Settings:
    """Settings for a command or a service; a bad configuration raises :class:`ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except (ValueError, OSError, RecursionError) as exc:
        # ValidationError and pydantic-settings' SettingsError are ValueErrors; a missing or unreadable
        # file is an OSError, bad TOML (or not UTF-8) a ValueError, TOML nested too deeply for tomllib's
        # recursive parser a RecursionError. Diagnose from the sources again to list every problem
        # with where it came from, rather than only the first one pydantic-settings stopped at.
        problems = settings_problems(overrides)
        if not problems:
            raise
        raise ConfigError(problems) from exc
