"""Per-minute decision aggregates, kept by ``meshauth worker analytics`` from the ``audit`` stream."""
