# issue 12 (audit5) scratch: the flush sends the same bytes, Valkey runs a script that XADDs nothing
# (isolates Valkey's XADD work on the load generator's core from the round trip).
import meshauth.bus.writer as _w

_w.XADD_MANY = "return #KEYS"
