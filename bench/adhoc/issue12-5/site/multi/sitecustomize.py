# issue 12 (audit5) scratch: the flush as MULTI, one native XADD per record, EXEC (no Lua) over the raw
# connection; replies: +OK, +QUEUED per XADD, EXEC's array.
import meshauth.bus.writer as _w


def _bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)


def _packed(self, keys, records):
    ml = str(self._maxlen).encode()
    parts = [b"*1\r\n$5\r\nMULTI\r\n"]
    for key, data in records:
        parts.append(b"*8\r\n$4\r\nXADD\r\n" + _bulk(key.encode()) + b"$6\r\nMAXLEN\r\n$1\r\n~\r\n" + _bulk(ml) + b"$1\r\n*\r\n$1\r\nd\r\n")
        parts.append(_bulk(data))
    parts.append(b"*1\r\n$4\r\nEXEC\r\n")
    return len(records) + 2, b"".join(parts)


async def _send_raw(raw, packed):
    n, payload = packed
    proto = raw._proto
    if proto is None or proto.lost:
        proto = await raw._connect()
    futs = [raw._send(proto, payload, _w.PRODUCER_SOCKET_TIMEOUT)]
    futs += [raw._send(proto, b"", _w.PRODUCER_SOCKET_TIMEOUT) for _ in range(n - 1)]
    for f in futs:
        await f


_w.StreamWriter._packed = _packed
_w.StreamWriter._send_raw = staticmethod(_send_raw)
