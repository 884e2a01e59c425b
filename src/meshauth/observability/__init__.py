"""Prometheus metrics every process exposes at ``/metrics``."""
