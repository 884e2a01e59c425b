"""Settings: one frozen object, read from ``MESHAUTH_*`` environment variables and an optional TOML file.

Precedence, highest first: explicit keyword arguments, environment, the file named by
``MESHAUTH_CONFIG_FILE``, defaults. ``DATABASE_URL`` and ``REDIS_URL`` are honoured without the
prefix because every platform sets them that way.
"""

from __future__ import annotations

import os
import stat
from functools import cached_property
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from meshauth.config_checks import (
    async_database_url,
    check_cluster_prefix,
    check_decision_token,
    check_policy_url,
    check_spiffe_id,
    database_url_checked,
    issuer_checked,
    public_url_checked,
    redis_prefix_checked,
    redis_url_checked,
    routes_file_checked,
    with_cluster_prefix,
)
from meshauth.config_sections import BatchingSettings, BusSettings, MonitoringSettings, WarmingSettings

SigningAlg = Literal["ES256", "EdDSA", "RS256"]

DEFAULT_VAR_DIR = Path("var")
MAX_LEEWAY_SECONDS = 300
REDIS_URL_KEYS = ("MESHAUTH_REDIS_URL", "REDIS_URL", "redis_url")  # in the order the first given wins
MAX_DECISION_TOKEN_CHARS = 512  # policy/guard.py refuses longer Authorization lines unread
# Every setting written out is a few KiB: a larger file is something else named by mistake (a log, a dump),
# refused before it is read whole into memory and parsed.
MAX_CONFIG_FILE_BYTES = 1_048_576


def config_file_problem(path: str) -> str | None:
    """Why the file at ``path`` cannot be a config file, or None. Judged from its ``stat`` before it is
    opened: opening a FIFO blocks until someone writes to it (the command would hang), and a device such
    as /dev/zero never ends."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "the file does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISDIR(info.st_mode):
        return "cannot be read (Is a directory)"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a FIFO, socket or device); name a TOML file"
    if info.st_size > MAX_CONFIG_FILE_BYTES:
        return f"larger than {MAX_CONFIG_FILE_BYTES} bytes ({info.st_size}); is it the config file?"
    return None


def _not_utf8(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return True
    return False


class Settings(BatchingSettings, MonitoringSettings, BusSettings, WarmingSettings, BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MESHAUTH_",
        frozen=True,
        extra="forbid",
        populate_by_name=True,
    )

    # Where local state lives when the embedded defaults are used.
    var_dir: Path = DEFAULT_VAR_DIR

    database_url: Annotated[str | None, AfterValidator(database_url_checked)] = Field(
        default=None, validation_alias=AliasChoices("MESHAUTH_DATABASE_URL", "DATABASE_URL", "database_url")
    )
    redis_url: Annotated[str | None, AfterValidator(redis_url_checked)] = Field(
        default=None, validation_alias=AliasChoices(*REDIS_URL_KEYS)
    )
    redis_prefix: Annotated[str, AfterValidator(redis_prefix_checked)] = "meshauth:"
    admin_token: SecretStr | None = None

    # Auth service
    issuer: Annotated[str, AfterValidator(issuer_checked)] = "http://127.0.0.1:8080"
    audience: str = "meshauth"
    auth_host: str = "127.0.0.1"
    auth_port: int = Field(default=8080, ge=0, le=65535)
    grpc_port: int = Field(default=9001, ge=0, le=65535)
    auth_workers: int = Field(default=1, ge=1, le=64)

    # Policy service
    policy_host: str = "127.0.0.1"
    policy_port: int = Field(default=8090, ge=0, le=65535)
    policy_workers: int = Field(default=1, ge=1, le=64)
    # The policy service's URL as its clients reach it, for the AuthZEN metadata
    # (/.well-known/authzen-configuration). Unset: the request's own Host, answered uncacheable —
    # a Host a shared cache kept for everyone would send every client's decisions to that host.
    policy_public_url: Annotated[str, AfterValidator(public_url_checked)] | None = None
    # Decision requests (bytes, items) and admin uploads (policies, schema, entity bulk loads).
    policy_max_request_bytes: int = Field(default=1_048_576, ge=1024)
    policy_max_evaluations: int = Field(default=1024, ge=1)
    # What one decision request's contexts and properties may weigh in all: each member or element
    # counted once per level it sits at (a value at a context's top counts 1). The engine's cost grows
    # so, not with bytes alone (policy/authzen.py: ~0.1 s at most at the default).
    policy_max_request_values: int = Field(default=65_536, ge=16)
    policy_max_upload_bytes: int = Field(default=64 * 1_048_576, ge=1024)
    # How often a replica re-reads store revisions to pick up another replica's writes (seconds).
    policy_refresh_interval: float = Field(default=0.05, gt=0, le=60)
    # Scope index and entity cache: switchable, for tests and for measuring what they buy.
    policy_index_enabled: bool = True
    policy_entity_cache_enabled: bool = True
    policy_entity_cache_size: int = Field(default=200_000, ge=1)
    # Entities referenced from request entities' attributes are loaded this many hops deep
    # (parents are always followed to the top of the hierarchy, up to policy_max_hierarchy_depth).
    policy_entity_ref_depth: int = Field(default=1, ge=0, le=8)
    policy_max_hierarchy_depth: int = Field(default=32, ge=1, le=256)
    # Stores with at most this many entities are also kept whole as one parsed Cedar entity set
    # (rebuilt in the background after writes), so requests without properties skip per-request
    # entity loading and parsing; 0 turns the snapshot off.
    policy_snapshot_max_entities: int = Field(default=200_000, ge=0)
    # --- Policy uploads (policy-upload): what the Cedar engine is given to compile ------------
    # Checked on the policy text before the engine sees it, at upload and at worker start
    # (policy/source.py): brackets ``( [ {`` open at once within one policy, and operators on a
    # policy's deepest expression path (``a && b && c`` is 2). The engine's stack overflows at
    # ~660 brackets and a ~1,300-term chain (8 MiB stack); the upper bounds keep any setting safe
    # on the 64 MiB compile thread (policy/cedar.py). Measurements: policy/README.md.
    policy_max_nesting_depth: int = Field(default=32, ge=1, le=128)
    policy_max_expression_size: int = Field(default=400, ge=10, le=1000)
    # Authz mode: the gate asks the policy service (issue 10; auth/authz.py). routes_file set: ext_authz
    # authorizes each request by the route table (meshauth.routes) after authenticating it; unset: authn
    # only, no policy client. policy_urls: JSON list of policy service base URLs (empty: policy_host and
    # policy_port). policy_store: the store asked, also by POST /v1/authorize. policy_check_deadline: a
    # check's whole budget (s); past it the gate answers 503 policy_unavailable. policy_decision_token:
    # sent as a bearer token to a protected decision API (unset: the first of decision_api_tokens, if any).
    # policy_l2_enabled: the decision cache's second level in Redis (off: in-process L1 only; to measure it).
    # policy_cache_*: allow / deny TTLs (s; they bound what an unannounced change may serve) and L1's entries.
    # policy_transport: the client's HTTP/1.1 pool, own (h1) or aiohttp (client/README.md "Transports").
    policy_urls: tuple[str, ...] = ()
    routes_file: Annotated[Path | None, AfterValidator(routes_file_checked)] = None
    policy_store: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    policy_check_deadline: float = Field(default=0.1, gt=0, le=10)
    policy_decision_token: SecretStr | None = None
    policy_l2_enabled: bool = True
    policy_cache_ttl: float = Field(default=5.0, gt=0, le=86_400)
    policy_cache_deny_ttl: float = Field(default=1.0, gt=0, le=86_400)
    policy_cache_l1_size: int = Field(default=10_000, ge=1, le=10_000_000)
    policy_transport: Literal["h1", "aiohttp"] = "h1"

    @field_validator("*", mode="before")
    @classmethod
    def _utf8(cls, v: Any) -> Any:
        # An environment value holding bytes that are not UTF-8 reaches Python as text with surrogates
        # (PEP 383): it validated as text, then every token, cookie or key encryption built from it failed
        # with UnicodeEncodeError. Refused here, naming the variable, like any other bad value.
        if any(_not_utf8(item) for item in (v if isinstance(v, list | tuple) else (v,))):
            raise ValueError("not UTF-8 text (the value holds bytes that are not UTF-8)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _cluster_prefix_default(cls, data: Any) -> Any:
        return with_cluster_prefix(data, REDIS_URL_KEYS)  # a Cluster URL alone: {meshauth}:

    @field_validator("redis_prefix")
    @classmethod
    def _cluster_prefix(cls, v: str, info: ValidationInfo) -> str:
        # redis_url is declared (so validated) first; absent from info.data when it was itself refused.
        check_cluster_prefix(v, info.data.get("redis_url"))
        return v

    @field_validator("policy_urls")
    @classmethod
    def _policy_urls(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for url in v:
            check_policy_url(url)
        return v

    @property
    def policy_base_urls(self) -> tuple[str, ...]:
        return self.policy_urls or (f"http://{self.policy_host}:{self.policy_port}",)

    @property
    def gate_decision_token(self) -> str | None:
        token = self.policy_decision_token or (self.decision_api_tokens[0] if self.decision_api_tokens else None)
        return token.get_secret_value() if token is not None else None

    # Decision API protection (issue 7 item 15; policy/guard.py). Off by default: the AuthZEN API
    # stays open, as it is on loopback. Either setting turns it on; with both, either credential is
    # accepted. Tokens: a JSON list, several at once so one can be rotated out while the next is in.
    # Principals: SPIFFE ids; setting them trusts ``x-forwarded-client-cert``, which only Istio's
    # sidecar may write: set them only where every request reaches the service through its sidecar.
    decision_api_tokens: tuple[SecretStr, ...] = ()
    decision_api_allowed_principals: tuple[str, ...] = ()

    # Transport (transport-ops): connection limits and timeouts of both services' HTTP ports and the
    # gRPC ext_authz port (seconds, counts). Why each one, and what was measured: meshauth/granian_server.py.
    http_mode: Literal["http1", "auto"] = "http1"  # auto adds h2c, but silent connections never time out
    http_backlog: int = Field(default=4096, ge=128, le=65_535)
    http_max_connections: int = Field(default=10_000, ge=16, le=1_000_000)  # per worker process
    http_header_read_timeout: float = Field(default=20.0, ge=0.1, le=600)  # also the keep-alive idle timeout
    http_body_read_timeout: float = Field(default=30.0, ge=0.1, le=3600)
    grpc_max_connections: int = Field(default=4096, ge=16, le=1_000_000)  # per process; more are closed at once
    grpc_handshake_timeout: float = Field(default=10.0, ge=0.1, le=600)
    grpc_max_connection_idle: float = Field(default=300.0, ge=1, le=86_400)
    grpc_max_concurrent_streams: int = Field(default=100, ge=1, le=10_000)
    grpc_keepalive_time: float = Field(default=60.0, ge=1, le=86_400)
    grpc_keepalive_timeout: float = Field(default=20.0, ge=1, le=600)

    # policy-index (issue 8): compiled policy subsets cached per store, keyed by request shape
    # (action, its groups, principal type, resource type), least recently used dropped first;
    # stores with fewer policies than policy_index_min_policies are evaluated whole (cheaper than a
    # compile per key); at an activation the previous version's hottest keys (at most
    # policy_index_warm_keys, for at most policy_index_warm_seconds) are compiled before it serves.
    policy_index_cache_keys: int = Field(default=16_384, ge=1)
    policy_index_min_policies: int = Field(default=48, ge=0)
    policy_index_warm_keys: int = Field(default=2048, ge=0)
    policy_index_warm_seconds: float = Field(default=2.0, ge=0, le=60)
    # A store not asked for during this long (between one and two periods) is unloaded from a
    # worker's memory and loaded again on its next request (~ms: docs/performance.md); 0: never.
    policy_store_idle_unload_seconds: float = Field(default=0.0, ge=0)

    # Tokens (seconds)
    signing_alg: SigningAlg = "ES256"
    # Encrypts signing keys at rest in the database (PKCS#8). Changing it makes existing keys unreadable:
    # rotate keys first, then switch after the overlap.
    key_encryption_key: SecretStr | None = None
    access_token_ttl: int = Field(default=900, ge=10, le=86_400)
    refresh_token_ttl: int = Field(default=14 * 86_400, ge=60)
    leeway: int = Field(default=30, ge=0, le=MAX_LEEWAY_SECONDS)
    max_token_bytes: int = Field(default=8192, ge=512, le=65_536)
    max_body_bytes: int = Field(default=65_536, ge=1024)

    # Caches (switchable, for tests and for measuring what they buy)
    jwt_cache_enabled: bool = True
    jwt_cache_size: int = Field(default=100_000, ge=1)
    session_cache_ttl: float = Field(default=5.0, ge=0)
    key_refresh_interval: float = Field(default=30.0, gt=0)
    # structure-auth (issue 9): how often each replica drops revocation-mirror entries (revoked jtis,
    # subject/client cut-offs) whose tokens can no longer verify, so the mirror stays bounded (seconds).
    denylist_sweep_interval: float = Field(default=60.0, gt=0)

    # Sessions (seconds)
    # An RFC 6265 cookie-name (a token): anything else (';', '=', a space, CR LF) breaks the Set-Cookie line.
    session_cookie_name: str = Field(default="meshauth_session", pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
    session_idle_timeout: int = Field(default=1800, ge=10)
    session_absolute_timeout: int = Field(default=8 * 3600, ge=10)
    cookie_secure: bool = True
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    session_check_budget: float = Field(default=0.15, gt=0, le=10)  # the gate's session lookup (s), then 503

    # Guessing throttle: failures allowed per window before 429 (the model: auth/throttle.py).
    throttle_window: int = Field(default=300, ge=1)
    # Per account (user or client id) from one address.
    throttle_max_per_account: int = Field(default=5, ge=1)
    throttle_max_per_address: int = Field(default=50, ge=1)
    # Per user from every address it has not logged in from, together, per throttle_total_window (s).
    throttle_max_per_account_total: int = Field(default=100, ge=1)
    throttle_total_window: int = Field(default=3600, ge=1)
    # An address a correct password came from is "known" for this long (s); at most this many per user.
    throttle_known_address_ttl: int = Field(default=30 * 86_400, ge=60)
    throttle_max_known_addresses: int = Field(default=16, ge=1, le=1024)
    # An attempt's reservation lapses after this long (s) if its replica died while hashing.
    throttle_attempt_timeout: float = Field(default=30.0, gt=0, le=600)
    # How long an attempt waits for attempts in flight to end before it is refused (s).
    throttle_max_wait: float = Field(default=5.0, ge=0, le=60)
    # Peers whose X-Forwarded-For is believed (CIDRs): the sidecar/gateway addresses in a mesh.
    trusted_proxies: tuple[str, ...] = ()

    # Password hashing (argon2id); the defaults are RFC 9106's second recommendation.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65_536, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    argon2_costly_budget_kib: int = Field(default=524_288, ge=262_144)  # KiB; see auth/passwords.py

    @field_validator("cookie_samesite")
    @classmethod
    def _samesite_secure(cls, v: str, info: ValidationInfo) -> str:
        # Declared after cookie_secure, so it is in info.data (unless refused itself).
        if v == "none" and info.data.get("cookie_secure") is False:
            raise ValueError(
                "SameSite=None needs cookie_secure=true: browsers drop a SameSite=None cookie without Secure"
            )
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in v:
            ip_network(cidr, strict=False)
        return v

    @field_validator("decision_api_tokens")
    @classmethod
    def _decision_tokens(cls, v: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for token in v:
            check_decision_token(token.get_secret_value(), MAX_DECISION_TOKEN_CHARS)
        return v

    @field_validator("decision_api_allowed_principals")
    @classmethod
    def _spiffe_ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for principal in v:
            check_spiffe_id(principal)
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("MESHAUTH_CONFIG_FILE")
        if config_file:
            problem = config_file_problem(config_file)
            if problem is not None:  # load_settings lists it (config_report) with the other problems
                raise FileNotFoundError(f"MESHAUTH_CONFIG_FILE={config_file}: {problem}")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL: the configured database, or a SQLite file under ``var_dir``."""
        url = self.database_url or f"sqlite:///{(self.var_dir / 'meshauth.db').resolve()}"
        return async_database_url(url)

    @property
    def kek(self) -> bytes | None:
        return self.key_encryption_key.get_secret_value().encode() if self.key_encryption_key else None

    @property
    def admin_token_file(self) -> Path:
        return self.var_dir / "admin-token"

    @property
    def spool_dir(self) -> Path:
        """Where the bus producer spools events while Redis is unreachable."""
        return self.bus_spool_dir or self.var_dir / "bus-spool"

    @property
    def redis_url_file(self) -> Path:
        """Written by ``meshauth up`` when it starts the embedded Valkey, read by the CLI."""
        return self.var_dir / "redis-url"
