"""Helpers every transport shares (``meshauth.http``): error bodies, media types, bounded reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from meshauth.http import ApiError, collect_bounded, error_body, media_type


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
