"""Pre-hashed argon2id PHC strings: accepted as argon2-cffi writes them, refused when malformed or weak."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError

from meshauth.auth.accounts import AccountError
from meshauth.auth.phc import check_phc

SALT = "c29tZXNhbHRzb21lc2FsdA"  # 16 bytes
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
HASH = "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"  # 32 bytes


def test_accepts_what_argon2_cffi_writes() -> None:
    """A hash made by argon2-cffi at OWASP's floor passes unchanged."""
    phc = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1, type=Type.ID).hash("pw")
    assert check_phc(phc) == phc


def test_accepts_parameters_at_the_caps() -> None:
    """m = 256 MiB, t = 16, p = 16 is the most a login may cost (checked by form, not by hashing)."""
    phc = f"$argon2id$v=19$m=262144,t=16,p=16${SALT}${HASH}"
    assert check_phc(phc) == phc


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (f"$argon2i$v=19$m=65536,t=3,p=1${SALT}${HASH}", "only argon2id"),
        (f"$argon2d$v=19$m=65536,t=3,p=1${SALT}${HASH}", "only argon2id"),
        ("$2b$12$abcdefghijklmnopqrstuuCj7bB0ZzxGmX0Gx9VnS7n1oYbE7q2kG", "only argon2id"),
        ("$pbkdf2-sha256$29000$abc$def", "only argon2id"),
        ("plain text", "only argon2id"),
        (f"$argon2id$v=16$m=65536,t=3,p=1${SALT}${HASH}", "not of the form"),
        (f"$argon2id$v=19$m=65536,t=3${SALT}${HASH}", "not of the form"),
        (f"$argon2id$v=19$m=65536,t=3,p=1,x=2${SALT}${HASH}", "not of the form"),
        (f"$argon2id$v=19$m=65536,t=3,p=1${SALT}${HASH}$", "not of the form"),
        (f" $argon2id$v=19$m=65536,t=3,p=1${SALT}${HASH}", "only argon2id"),
        (f"$argon2id$v=19$m=065536,t=3,p=1${SALT}${HASH}", "not of the form"),
        (f"$argon2id$v=19$m=65536,t=3,p=1${SALT}=${HASH}", "not of the form"),
        (f"$argon2id$v=19$m=4096,t=3,p=1${SALT}${HASH}", "too weak"),
        (f"$argon2id$v=19$m=19456,t=1,p=1${SALT}${HASH}", "too weak"),
        (f"$argon2id$v=19$m=99999999,t=3,p=1${SALT}${HASH}", "above"),
        # Every login to the account allocates m: gigabytes from an import would let strangers exhaust memory.
        (f"$argon2id$v=19$m=262145,t=3,p=1${SALT}${HASH}", "above"),
        (f"$argon2id$v=19$m=65536,t=17,p=1${SALT}${HASH}", "above"),
        (f"$argon2id$v=19$m=65536,t=3,p=17${SALT}${HASH}", "above"),
        (f"$argon2id$v=19$m=65536,t=3,p=1$c2FsdA${HASH}", "salt must be 8-64 bytes"),
        (f"$argon2id$v=19$m=65536,t=3,p=1${SALT}$aGFzaA", "hash must be 16-128 bytes"),
        (f"$argon2id$v=19$m=65536,t=3,p=1${SALT}${HASH}AA", "not unpadded base64"),
        (f"$argon2id$v=19$m=65536,t=3,p=1${SALT}${HASH}\x00", "not of the form"),
        (f"$argon2id$v=19$m=65536,t=3,p=1${SALT}${HASH}é", "ASCII"),
        ("$argon2id$v=19$m=65536,t=3,p=1$" + "A" * 600, "ASCII"),
        (12345, "ASCII"),
    ],
)
def test_refuses_malformed_and_weak(value: object, reason: str) -> None:
    """Other algorithms, other versions, extra or missing fields, weak or huge parameters, bad base64."""
    with pytest.raises(AccountError, match=reason):
        check_phc(value)


@pytest.mark.parametrize("field", ["salt", "hash"])
def test_refuses_base64_argon2_cannot_decode(field: str) -> None:
    """A last character with bits set past the data: argon2 fails every verification of such a string
    ("Decoding failed"), so importing it would lock the account out; it is refused instead."""
    real = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1, type=Type.ID).hash("pw")
    head, salt, digest = real.rsplit("$", 2)

    # Both end in a partial group (16 and 32 bytes): flipping the last bit touches only padding bits.
    def flipped(text: str) -> str:
        return text[:-1] + B64[B64.index(text[-1]) ^ 1]

    bad = f"{head}${flipped(salt)}${digest}" if field == "salt" else f"{head}${salt}${flipped(digest)}"
    with pytest.raises(VerificationError):
        PasswordHasher().verify(bad, "pw")
    with pytest.raises(AccountError, match=f"{field} is not canonical base64"):
        check_phc(bad)
