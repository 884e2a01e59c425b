"""Caches: the in-process L1 that the hot paths read without leaving the process."""

from meshauth.cache.l1 import ExpiringMap

__all__ = ["ExpiringMap"]
