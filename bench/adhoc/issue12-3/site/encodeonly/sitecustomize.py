# issue 12 (audit3) scratch: the gate's hook builds and encodes every event; nothing is buffered,
# so the flush task never has anything to send.
import meshauth.bus.producer as _p
from meshauth.bus.events import encode as _encode


def _publish(self, stream, event, *, key=None):
    _encode(event)
    return True


_p.Producer.publish = _publish
