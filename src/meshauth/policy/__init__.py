"""The policy decision service: Cedar policy stores behind the OpenID AuthZEN 1.0 API.

Layout, from the edge inwards:

- serving: ``__main__`` (launcher; ``server`` is its old alias) → ``app`` (factory) →
  ``decision_front`` (the two decision paths, ASGI and RSGI, ahead of Starlette) → ``api``
  (decision routes) and ``admin_routes`` (admin HTTP) → ``admin`` (store operations);
  ``guard`` (who may ask), ``authzen`` (request parsing), ``errors``, ``names``;
- deciding: ``evaluator`` (batched decisions) → ``registry`` (the stores this process serves) with
  ``state`` (a compiled store), ``follow`` (other writers), ``missing``, ``idle``,
  ``snapshot_builds`` / ``snapshot`` (whole-store entity sets);
- policy text: ``index`` (scope index) ← ``scopes`` and ``conditions`` ← ``cedar_syntax``;
  ``source`` (locations, syntax errors), ``source_limits`` and ``servable`` (upload limits);
- entities: ``entity_loader`` → ``entity_cache``, ``entity_store`` (SQL) → ``entity_record``;
  ``entity_upload`` (validation); ``stores`` (store rows), ``write_signal``;
- ``cedar`` (the only cedarpy user); ``metrics`` (counters) and ``store_gauges`` (per-store gauges).
"""
