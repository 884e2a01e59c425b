"""Redis Streams: what must reach every replica (invalidations) or must not block a request (audit)."""
