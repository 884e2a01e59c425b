"""Pre-hashed passwords brought by a migration: argon2id PHC strings, checked strictly, never re-hashed.

A bulk import (``/admin/users:bulk``, ``meshauth admin users import``) may carry ``password_hash``
instead of ``password``: the hash another system stored, accepted as is so a migration costs no
hashing (and needs no plain passwords). What is accepted, and why:

- only ``$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>`` — the algorithm and version
  this service verifies with (argon2-cffi). argon2i/argon2d, bcrypt, scrypt, PBKDF2 and anything
  else are refused: a login would fail on them, or verify with a weaker construction;
- parameters at least OWASP's floor for argon2id (m ≥ 19,456 KiB with t ≥ 2, or m ≥ 47,104 KiB with
  t ≥ 1), at most m = 256 MiB, t = 16, p = 16: every login to such an account allocates m for its
  verification, and anyone may try to log in, so an imported m of gigabytes would let strangers run a
  replica out of memory with a few concurrent attempts. The caps hold the common migration sources
  (Django m=100 MiB p=8, Bitwarden 64 MiB t=3 p=4, RFC 9106's 64 MiB and 2 GiB options: the first);
- salt of 8-64 bytes and hash of 16-128 bytes, in canonical unpadded standard base64 (the PHC format;
  argon2 fails to decode a last character with unused bits set);
- nothing else: no extra fields, no whitespace, ASCII only, at most ``MAX_PHC_CHARS``.

Accounts imported this way keep their parameters until their password is set again.
"""

from __future__ import annotations

import re

from meshauth.auth.accounts import AccountError

__all__ = ["MAX_PHC_CHARS", "check_phc"]

MAX_PHC_CHARS = 512
_PHC = re.compile(
    r"\$argon2id\$v=19\$m=(?P<m>[1-9][0-9]{0,9}),t=(?P<t>[1-9][0-9]{0,3}),p=(?P<p>[1-9][0-9]{0,3})"
    r"\$(?P<salt>[A-Za-z0-9+/]+)\$(?P<hash>[A-Za-z0-9+/]+)"
)
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_MAX_MEMORY_KIB = 256 * 1024
_MAX_TIME = 16
_MAX_LANES = 16


def _b64(name: str, field: str, text: str, low: int, high: int) -> None:
    """Unpadded standard base64 of ``low``-``high`` bytes. The alphabet was checked by ``_PHC``; what is
    left is the length: 4 characters carry 3 bytes, and a lone trailing character carries none."""
    whole, rest = divmod(len(text), 4)
    if rest == 1:
        raise AccountError(f"{name}: {field} is not unpadded base64")
    size = whole * 3 + max(rest - 1, 0)
    if not low <= size <= high:
        raise AccountError(f"{name}: {field} must be {low}-{high} bytes, not {size}")
    # A partial last group leaves bits of its last character unused; argon2 refuses to decode (and so
    # fails every login to the account) unless they are zero, as an encoder writes them.
    if rest and _B64.index(text[-1]) & (0b1111 if rest == 2 else 0b11):
        raise AccountError(f"{name}: {field} is not canonical base64 (bits set past its last byte)")


def check_phc(value: object, name: str = "password_hash") -> str:
    """``value`` if it is an acceptable argon2id PHC string, else AccountError saying why (naming the
    field ``name``: ``client_secret_hash`` for a client)."""
    if not isinstance(value, str) or not value.isascii() or len(value) > MAX_PHC_CHARS:
        raise AccountError(f"{name} must be an argon2id PHC string of at most {MAX_PHC_CHARS} ASCII characters")
    algorithm = value.split("$")[1] if value.startswith("$") and value.count("$") >= 2 else ""
    if algorithm != "argon2id":
        shown = algorithm[:16] or "not a PHC string"
        raise AccountError(f"{name}: only argon2id is accepted ({shown!r} refused)")
    m = _PHC.fullmatch(value)
    if m is None:
        raise AccountError(f"{name}: not of the form $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>")
    memory, passes, lanes = int(m["m"]), int(m["t"]), int(m["p"])
    if memory > _MAX_MEMORY_KIB or passes > _MAX_TIME or lanes > _MAX_LANES:
        raise AccountError(f"{name}: parameters above m={_MAX_MEMORY_KIB},t={_MAX_TIME},p={_MAX_LANES}")
    if memory < 8 * lanes:
        raise AccountError(f"{name}: m must be at least 8 KiB per lane")
    if not (memory >= 47_104 or (memory >= 19_456 and passes >= 2)):
        raise AccountError(
            f"{name}: parameters too weak (m={memory},t={passes}); the floor is m=19456,t=2 or m=47104,t=1"
        )
    _b64(name, "salt", m["salt"], 8, 64)
    _b64(name, "hash", m["hash"], 16, 128)
    return value
