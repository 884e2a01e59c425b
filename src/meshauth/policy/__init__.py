"""The policy decision service: Cedar policy stores behind the OpenID AuthZEN 1.0 API.

Layout: ``app`` (factory) → ``api`` (routes) → ``admin`` (store operations) and ``evaluator``
(batched decisions) → ``registry`` (compiled stores) / ``index`` (scope index) / ``entities``
(loader, cache, SQL) / ``snapshot`` (whole-store entity sets) → ``cedar`` (the only cedarpy user).
"""
