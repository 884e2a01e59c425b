# issue 12 scratch: the gate's hook runs (template found), the producer's buffer is not appended to
import meshauth.bus.producer as _p

_p.Producer.publish_template = lambda self, stream, key, tpl, at: True
