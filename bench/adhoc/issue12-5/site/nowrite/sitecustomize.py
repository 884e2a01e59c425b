# issue 12 (audit5) scratch: the hook and the flush's service-side work run, but the flush sends nothing:
# no round trip, no Valkey CPU on the load generator's core.
import meshauth.bus.writer as _w


async def _write(self, records):
    self._packed([k for k, _ in records], records)
    return True


_w.StreamWriter.write = _write
