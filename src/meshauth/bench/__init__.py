"""Benchmark harness: real servers in their own processes, load from another core, reported as tables."""
