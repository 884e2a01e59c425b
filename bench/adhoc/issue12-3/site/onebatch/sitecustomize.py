# issue 12 (audit3) scratch: one XADD per partition per flush carrying that partition's events of the
# flush, concatenated — the Valkey-side cost of a batch-entry format, for the gate benchmark only
# (nothing reads these entries).
import meshauth.bus.writer as _w

_orig_packed = _w.StreamWriter._packed


def _packed(self, keys, records):
    by: dict = {}
    for key, data in records:
        by.setdefault(key, []).append(data)
    return _orig_packed(self, list(by), [(k, b"".join(v)) for k, v in by.items()])


_w.StreamWriter._packed = _packed
