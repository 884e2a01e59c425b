"""The prepared gRPC body h2load sends decodes back to the CheckRequest it was built from."""

from __future__ import annotations

import struct

import pytest
from envoy.service.auth.v3 import external_auth_pb2

from meshauth.bench import grpc_body


def test_frame_decodes_to_the_check_request() -> None:
    framed = grpc_body.frame(grpc_body.check_request("Bearer t0k", path="/R3/r3", method="GET"))
    assert framed[0] == 0
    assert struct.unpack(">I", framed[1:5])[0] == len(framed) - 5
    req = external_auth_pb2.CheckRequest.FromString(grpc_body.unframe(framed))
    http = req.attributes.request.http
    assert http.method == "GET"
    assert http.path == "/R3/r3"
    assert http.headers["authorization"] == "Bearer t0k"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00\x00", "5-byte header"),
        (b"\x01\x00\x00\x00\x00", "compressed"),
        (b"\x00\x00\x00\x00\x05abc", "carries 3"),
    ],
)
def test_bad_frames_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        grpc_body.unframe(data)
