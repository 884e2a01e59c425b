"""The audit trail: the ``audit`` stream's events stored in ``audit_log`` (worker) and queried (API)."""
