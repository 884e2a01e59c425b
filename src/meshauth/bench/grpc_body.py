"""The prepared gRPC request h2load sends: one ext_authz ``CheckRequest``, length-prefixed (gRPC framing:
a zero compression flag, a 4-byte big-endian length, the serialized message)."""

from __future__ import annotations

import struct

from envoy.service.auth.v3 import external_auth_pb2

CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check"


def check_request(authorization: str, path: str = "/documents/hot", method: str = "GET") -> bytes:
    req = external_auth_pb2.CheckRequest()
    http = req.attributes.request.http
    http.method = method
    http.path = path
    http.host = "bench.local"
    http.headers["authorization"] = authorization
    return bytes(req.SerializeToString())


def frame(message: bytes) -> bytes:
    return struct.pack(">BI", 0, len(message)) + message


def unframe(data: bytes) -> bytes:
    """The message inside one gRPC frame; ValueError on a short or compressed frame."""
    if len(data) < 5:
        raise ValueError("a gRPC frame has a 5-byte header")
    flag, length = struct.unpack(">BI", data[:5])
    if flag != 0:
        raise ValueError("compressed frames are not used here")
    if len(data) != 5 + length:
        raise ValueError(f"frame says {length} bytes, carries {len(data) - 5}")
    return data[5:]
