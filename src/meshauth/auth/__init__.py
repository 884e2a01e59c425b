"""The auth service: tokens (RFC 6749 / 9068), sessions, and Envoy ext_authz in authn mode.

Read a request's path in this order: ``extauthz_http`` / ``extauthz_grpc`` → ``gate`` (credential → identity)
→ ``tokens`` (JWT verification and its L1 cache) and ``revocation`` / ``sessions``.
"""
