# issue 12 scratch: auditing on, the producer's gauge reader not started
import meshauth.bus.gauges as _g
_g.StreamGauges.start = lambda self: None
