"""An alias kept for existing deployments: ``python -m meshauth.policy.server`` runs the same launcher
as ``python -m meshauth.policy`` (``meshauth.policy.__main__``)."""

from __future__ import annotations

from meshauth.policy.__main__ import main

if __name__ == "__main__":
    main()
