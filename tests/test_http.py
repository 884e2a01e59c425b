"""Helpers every transport shares (``meshauth.http``): error bodies, media types, bounded reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from meshauth.http import ApiError, check_length, collect_bounded, error_body, media_type


def test_error_body_is_error_description_and_extra_fields() -> None:
    body = error_body("conflict", "version moved", {"current_version": 3})
    assert msgspec.json.decode(body) == {
        "error": "conflict",
        "error_description": "version moved",
        "current_version": 3,
    }
    assert ApiError(409, "conflict", "version moved", extra={"current_version": 3}).body() == body


def test_media_type_drops_parameters_and_case_from_str_and_bytes() -> None:
    assert media_type("Application/JSON ; charset=utf-8") == "application/json"
    assert media_type(b"application/x-www-form-urlencoded") == "application/x-www-form-urlencoded"
    assert media_type(None) == ""


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_collect_bounded_joins_chunks_up_to_the_limit() -> None:
    assert await collect_bounded(_chunks(b"ab", b"cd"), 4) == b"abcd"


async def test_collect_bounded_refuses_413_once_past_the_limit() -> None:
    with pytest.raises(ApiError) as refused:
        await collect_bounded(_chunks(b"ab", b"cd", b"e"), 4)
    assert refused.value.status == 413


@pytest.mark.parametrize("declared", ["0" * 5_000 + "95", b"0" * 5_000 + b"95", "0", b"00"])
def test_check_length_reads_leading_zeros_as_the_number(declared: str | bytes) -> None:
    """A Content-Length padded with thousands of zeros (allowed: 1*DIGIT) is its value, not a ValueError."""
    check_length(declared, 100)


@pytest.mark.parametrize("declared", ["0" * 5_000 + "101", b"0" * 5_000 + b"9" * 5_000, "9" * 5_000])
def test_check_length_refuses_413_past_the_limit_however_it_is_written(declared: str | bytes) -> None:
    with pytest.raises(ApiError) as refused:
        check_length(declared, 100)
    assert refused.value.status == 413


@pytest.mark.parametrize("declared", ["²", "١٢", "-1", "+5", "", b"1 2"])
def test_check_length_refuses_400_what_is_not_ascii_digits(declared: str | bytes) -> None:
    with pytest.raises(ApiError) as refused:
        check_length(declared, 100)
    assert refused.value.status == 400
