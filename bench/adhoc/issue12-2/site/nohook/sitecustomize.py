# issue 12 scratch: auditing on, the gate's hook a no-op (the producer, its flush task and gauges run)
import meshauth.auth.audit_hooks as _h
_h.AuthAudit.gate = lambda self, *a: None
