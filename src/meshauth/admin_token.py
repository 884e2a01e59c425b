"""The admin bearer token that guards both services' ``/admin/`` APIs."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from meshauth.config import Settings


def ensure_admin_token(settings: Settings) -> tuple[str, Path | None]:
    """Return the admin token and, when meshauth generated it, the 0600 file that holds it."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value(), None
    path = settings.admin_token_file
    try:
        token = path.read_text().strip()
        if token:
            return token, path
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.chmod(path, 0o600)
    return token, path


def read_admin_token(settings: Settings) -> str | None:
    """The token a service should accept; None means the admin API refuses everyone."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    try:
        return settings.admin_token_file.read_text().strip() or None
    except OSError:
        return None


def one_authorization(lines: list[str]) -> str | None:
    """The request's Authorization header when it sent exactly one, else None (refused): with two,
    which one is "the" credential depends on who reads them (this service the first, a proxy or a
    log maybe the other), so neither is taken — as the policy service's decision guard does."""
    return lines[0] if len(lines) == 1 else None


def is_admin(authorization: str | None, expected: str | None) -> bool:
    """Constant-time check of an ``Authorization: Bearer …`` header against the admin token."""
    if not expected or not authorization:
        return False
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credential.strip().encode(), expected.encode())
