"""meshauth: authentication and authorization for services in a Kubernetes + Istio mesh.

Layout (see ARCHITECTURE.md in the shared docs):

- ``config``, ``db``, ``kv``, ``cache``, ``bus``, ``observability``: shared layers; they import no service.
- ``auth``: the auth service (tokens, sessions, Envoy ext_authz).
- ``policy``: the policy decision service (Cedar, AuthZEN).
- ``cli`` and ``local``: the command line and the local supervisor; the only places that know every part.
"""

__version__ = "0.1.0"
