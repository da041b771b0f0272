"""Settings: every environment variable and flag servepath reads, in one place.

Nothing else in servepath reads ``os.environ``. The CLI builds a :class:`Settings`
from the environment plus its flags and passes it down.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from servepath.contract import DEFAULT_HEALTH_ROUTE, DEFAULT_PATH_ECHO_ROUTE, DEFAULT_PREDICT_ROUTE
from servepath.errors import ConfigError
from servepath.model.source import EXAMPLE_NAME, ModelSource, parse_sha256
from servepath.net.forwarded import TrustedProxies

DEFAULT_PORT = 8080
#: Vertex AI's limit for a request to a shared public endpoint.
DEFAULT_MAX_BODY_BYTES = 1_500_000
DEFAULT_MAX_INSTANCES = 1_000
DEFAULT_GRACE_PERIOD = 20.0
#: The live page's route (``--ui``).
DEFAULT_UI_ROUTE = "/_ui"

# Serving under pressure (docs/serving.md): bounds on the work in the building, on what one
# connection may hold, and on how long a slow or silent client keeps a connection.
DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_MAX_IN_FLIGHT = 512
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 10.0
DEFAULT_KEEPALIVE_TIMEOUT = 5.0
#: On Vertex AI (AIP_* set): Google's load balancers keep idle upstream connections 600 s,
#: and a server that closes one first races the next request sent on it (a 502 the server
#: never logs). The server must outlast the proxy in front.
VERTEX_KEEPALIVE_TIMEOUT = 620.0
#: What a request shed for the load is answered with: 503 (the default) or 429, which proxies
#: that eject a backend after consecutive 5xx (Envoy's outlier detection) do not count.
SHED_STATUSES = (429, 503)
#: Connections the kernel may hold for accept(); past it, handshakes are dropped (clients retry).
DEFAULT_BACKLOG = 4096
DEFAULT_SEND_TIMEOUT = 30.0
#: nginx's large_client_header_buffers (4 x 8k): the request line, and each header line.
DEFAULT_MAX_URL_BYTES = 8192
DEFAULT_MAX_HEADER_BYTES = 32768
#: Envoy's default header count limit.
DEFAULT_MAX_HEADERS = 100
#: The levels `--log-level` takes: those both Python's logging and uvicorn know.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

# The worker processes of a multi-worker server rebuild Settings from this variable.
_SERIALIZED_VAR = "SERVEPATH_SETTINGS_JSON"


def default_data_dir(env: Mapping[str, str]) -> Path:
    if env.get("SERVEPATH_DATA_DIR"):
        return Path(env["SERVEPATH_DATA_DIR"])
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", ".")) / ".local" / "share")
    return Path(base) / "servepath"


@dataclass(frozen=True)
class ProxyEnv:
    """Forward-proxy settings as the standard variables state them (lower case wins)."""

    http: str | None = None
    https: str | None = None
    all: str | None = None
    no_proxy: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProxyEnv:
        def pick(name: str) -> str | None:
            value = env.get(name.lower()) or env.get(name.upper())
            return value or None

        return cls(
            http=pick("http_proxy"),
            https=pick("https_proxy"),
            all=pick("all_proxy"),
            no_proxy=pick("no_proxy"),
        )


#: A candidate loaded without a weight answers this percent of callers.
DEFAULT_CANDIDATE_WEIGHT = 10.0
#: A shadow loaded without a share sees this fraction of requests.
DEFAULT_SHADOW_SHARE = 1.0
#: Rows live drift covers at most, per worker (the latest; at least half as many).
DEFAULT_DRIFT_WINDOW = 10_000


@dataclass(frozen=True)
class Settings:
    """Everything `servepath serve` and the client tools are configured by."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    workers: int = 1
    model_path: Path | None = None
    # a model in cloud storage (gs://, s3://, https://), fetched into data_dir at start-up
    model_uri: str | None = None
    gcs_endpoint: str | None = None  # an emulator or private endpoint; None: Google's
    s3_endpoint: str | None = None  # MinIO, moto, another S3; None: AWS's
    model_name: str | None = None
    #: The model artifact's SHA-256 (64 hex digits): checked before it loads; None: no pin.
    model_sha256: str | None = None
    #: A plain http:// model URL is accepted (a network you trust); off: refused.
    allow_http_model: bool = False
    #: A JSON schema for the model's inputs that wins over what the model says; None: the
    #: artifact's ``<artifact>.schema.json`` when it exists, else what the model says.
    model_schema: Path | None = None
    #: Every answer also carries ``probabilities``, one per class.
    probabilities: bool = False
    #: Versions of one model, a folder each (a directory, gs://… or s3://…); None: one model.
    #: With it, ``--model`` names a version's folder (default: the highest).
    model_repository: str | None = None
    #: "explicit": the model repository routes (load, unload, index) are served, to admin keys.
    model_control: str = "none"
    #: Names of the keys (from the key file) that may call the model repository routes.
    admin_keys: str = ""
    #: A second version answering ``candidate_weight`` % of callers (a label, a path or a URI).
    candidate: str | None = None
    candidate_weight: float = 0.0
    #: A version that sees a copy of ``shadow_share`` of the requests after they are answered.
    shadow: str | None = None
    shadow_share: float = 0.0
    #: Artifacts larger than this are refused before they load (bytes); None: no bound.
    max_model_bytes: int | None = None
    #: The model's reference profile (``servepath model profile``): live drift of the inputs
    #: against it on /metrics and the live page; None: no drift measured.
    reference_profile: Path | None = None
    #: Rows live drift covers at most, per worker.
    drift_window: int = DEFAULT_DRIFT_WINDOW
    data_dir: Path = field(default_factory=lambda: default_data_dir(os.environ))
    health_route: str = DEFAULT_HEALTH_ROUTE
    predict_route: str = DEFAULT_PREDICT_ROUTE
    path_echo_route: str | None = DEFAULT_PATH_ECHO_ROUTE
    #: The live page of what the server saw (its script, stylesheet and data under it);
    #: None: no page.
    ui_route: str | None = DEFAULT_UI_ROUTE
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_instances: int = DEFAULT_MAX_INSTANCES
    grace_period: float = DEFAULT_GRACE_PERIOD
    max_batch: int = 256
    cache_url: str = "memory"
    cache_ttl: float = 3600.0
    cache_max_entries: int = 100_000
    cache_max_bytes: int = 64 * 1024 * 1024
    cache_prefix: str = "servepath"
    cache_timeout: float = 0.05
    store_url: str = "sqlite"
    #: Seconds a PostgreSQL write may wait before the log counts the database as hung and
    #: spools (a durable request waits at most about this long on a stalled database).
    store_write_timeout: float = 5.0
    durable: bool = False
    #: Seconds a request may take from its first byte to its answer; past it, it is dropped
    #: before the model runs (503). A caller's own deadline header may shorten it.
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    #: Seconds of expected queueing past which a request is shed; None: set from the
    #: measured service time.
    max_queue_wait: float | None = None
    #: Open connections past which new ones are refused; None: from the file-descriptor limit.
    max_connections: int | None = None
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    #: The status of a request shed for the load (admission, the connection limit): 503 or 429.
    shed_status: int = 503
    backlog: int = DEFAULT_BACKLOG
    #: A model that does not load: "exit" stops the server non-zero; "stay" keeps it up and
    #: unready (health 503), for orchestrators that prefer a live-but-unready process.
    on_model_failure: str = "exit"
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    max_url_bytes: int = DEFAULT_MAX_URL_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    access_log: bool = False
    #: Serve HTTPS with this certificate chain (PEM, leaf first) and key; reloaded on SIGHUP.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: A plain-HTTP port answered with 308 redirects to the HTTPS port; None: no such port.
    http_redirect_port: int | None = None
    #: A port of its own for health, readiness and metrics (plain HTTP, its own accept queue
    #: and connection bound): probes never wait behind predictions. None: no such port.
    health_port: int | None = None
    #: API keys, one NAME:KEY per line; None: every route is open (service/auth.py).
    api_key_file: Path | None = None
    #: With keys: health and readiness need a key too (they are open by default).
    protect_health: bool = False
    #: With keys: these paths stay open, comma-separated (e.g. "/metrics,/docs").
    open_routes: str = ""
    #: Proxies whose Forwarded / X-Forwarded-For headers are believed: comma-separated
    #: addresses and CIDRs, IPv4 and IPv6, or "*"; empty: none (every header is a claim).
    forwarded_allow_ips: str = ""
    #: Also read RFC 7239 ``Forwarded`` from those proxies (preferred over X-Forwarded-For);
    #: only for a proxy that writes it and drops the caller's own. Off: it is only claimed.
    trust_forwarded: bool = False
    #: Send traces to this OTLP/HTTP receiver (``http://collector:4318``: the traces path
    #: ``/v1/traces`` is added to a URL without a path); None: no tracing at all.
    otlp_endpoint: str | None = None
    #: The fraction of new traces sampled (a caller's sampled ``traceparent`` always is).
    trace_sample: float = 1.0
    #: Traced requests waiting for export past which new ones' spans are dropped (counted).
    trace_queue: int = 2048
    #: The ``service.name`` the spans are reported under.
    trace_service_name: str = "servepath"
    log_level: str = "info"
    in_kubernetes: bool = False
    #: Vertex AI's variables (AIP_*) are set: a prediction container behind Google's front ends.
    on_vertex: bool = False
    proxy: ProxyEnv = field(default_factory=ProxyEnv)
    #: The CA bundle clients trust instead of the system store (SSL_CERT_FILE), as OpenSSL,
    #: curl and Python's ssl module read it; a --cafile flag wins over it.
    ssl_cert_file: str | None = None
    #: The key the client commands send (SERVEPATH_API_KEY); --api-key wins over it.
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"log level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} is outside 1-65535")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        for name in ("health_route", "predict_route"):
            route = getattr(self, name)
            if not route.startswith("/"):
                raise ConfigError(f"{name} must start with '/', got {route!r}")
        if self.health_route == self.predict_route:
            raise ConfigError("the health route and the predict route must differ")
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes below 1024 would reject every real request")
        if self.max_instances < 1:
            raise ConfigError("max_instances must be at least 1")
        if self.grace_period < 0:
            raise ConfigError("grace_period cannot be negative")
        self._check_serving_limits()
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both --tls-cert and --tls-key")
        if self.http_redirect_port is not None:
            if self.tls_cert is None:
                raise ConfigError("--http-redirect-port redirects to HTTPS: give --tls-cert too")
            if not 0 < self.http_redirect_port < 65536 or self.http_redirect_port == self.port:
                raise ConfigError(
                    f"--http-redirect-port {self.http_redirect_port} must be a port other "
                    f"than the HTTPS port {self.port}"
                )
        if self.health_port is not None and (
            not 0 < self.health_port < 65536
            or self.health_port in (self.port, self.http_redirect_port)
        ):
            raise ConfigError(
                f"--health-port {self.health_port} must be a port of its own, not the "
                f"server's {self.port}"
                + (f" or the redirect's {self.http_redirect_port}"
                   if self.http_redirect_port else "")
            )  # fmt: skip
        self.trusted_proxies  # noqa: B018 -- parse once, so that a bad entry fails here
        self._check_traces()
        self._check_model_source()
        self._check_versions()

    def _check_versions(self) -> None:
        if self.model_repository is not None and (
            self.model_uri is not None or (self.model_path is not None and self.model_label is None)
        ):
            raise ConfigError(
                "with --model-repository, --model names one of its version folders "
                f"(e.g. --model 2), not {self.model_uri or self.model_path}"
            )
        if self.model_control not in ("none", "explicit"):
            raise ConfigError(f"model control is none or explicit, not {self.model_control!r}")
        if self.model_control == "explicit":
            if self.model_repository is None:
                raise ConfigError(
                    "--model-control explicit loads versions from --model-repository: give one"
                )
            if self.api_key_file is None or not self.admin_key_names:
                raise ConfigError(
                    "--model-control explicit loads models at a caller's word, and loading a "
                    "joblib/pickle runs code: it needs --api-key-file and --admin-keys NAME "
                    "(the keys that may call it)"
                )
        if not 0 <= self.candidate_weight <= 100:
            raise ConfigError(f"--candidate-weight is 0 to 100 %, not {self.candidate_weight}")
        if not 0 <= self.shadow_share <= 1:
            raise ConfigError(f"--shadow-share is a fraction 0 to 1, not {self.shadow_share}")
        if self.candidate_weight > 0 and self.candidate is None:
            raise ConfigError("--candidate-weight needs --candidate VERSION|PATH")
        if self.shadow_share > 0 and self.shadow is None:
            raise ConfigError("--shadow-share needs --shadow VERSION|PATH")
        if self.max_model_bytes is not None and self.max_model_bytes < 1:
            raise ConfigError("max_model_bytes must be at least 1 byte")
        if self.drift_window < 100:
            raise ConfigError(f"--drift-window is at least 100 rows, not {self.drift_window}")

    def _check_traces(self) -> None:
        if not 0 <= self.trace_sample <= 1:
            raise ConfigError(f"--trace-sample is a fraction 0 to 1, not {self.trace_sample}")
        if self.trace_queue < 1:
            raise ConfigError(f"--trace-queue must be at least 1, not {self.trace_queue}")
        if self.otlp_endpoint is not None:
            object.__setattr__(self, "otlp_endpoint", traces_url(self.otlp_endpoint))

    @property
    def model_label(self) -> str | None:
        """With a model repository, the version ``--model`` names (None: the highest)."""
        if self.model_repository is None or self.model_path is None:
            return None
        text = str(self.model_path)
        return text if "/" not in text and text not in (".", "..") else None

    @property
    def admin_key_names(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.admin_keys.split(",") if n.strip())

    def _check_model_source(self) -> None:
        if self.model_sha256 is not None:
            object.__setattr__(self, "model_sha256", parse_sha256(self.model_sha256))
        uri = self.model_uri or ""
        if uri.lower().startswith("http://") and not self.allow_http_model:
            raise ConfigError(
                f"model URL {uri} is plain http://: anyone on the path can swap the file, and "
                "a joblib/pickle file runs code when it loads; use https://, or "
                "--allow-http-model (SERVEPATH_ALLOW_HTTP_MODEL=1) on a network you trust"
            )

    def _check_serving_limits(self) -> None:
        for name in (
            "request_timeout",
            "header_timeout",
            "body_timeout",
            "keepalive_timeout",
            "send_timeout",
            "store_write_timeout",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value}")
        if self.max_queue_wait is not None and not self.max_queue_wait > 0:
            raise ConfigError("max_queue_wait must be positive seconds, or auto")
        if self.max_in_flight < 1:
            raise ConfigError("max_in_flight must be at least 1")
        if self.shed_status not in SHED_STATUSES:
            raise ConfigError(f"shed status is 429 or 503, not {self.shed_status}")
        if self.on_model_failure not in ("exit", "stay"):
            raise ConfigError(f"on_model_failure is exit or stay, not {self.on_model_failure!r}")
        if not 1 <= self.backlog <= 65535:
            raise ConfigError(f"backlog must be 1 to 65535 connections, got {self.backlog}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigError("max_connections must be at least 1, or auto")
        if self.max_url_bytes < 256:
            raise ConfigError("max_url_bytes below 256 would reject ordinary requests")
        if self.max_header_bytes < 1024:
            raise ConfigError("max_header_bytes below 1024 would reject ordinary requests")
        if self.max_headers < 8:
            raise ConfigError("max_headers below 8 would reject ordinary requests")

    @functools.cached_property
    def trusted_proxies(self) -> TrustedProxies:
        """``forwarded_allow_ips`` parsed (a frozen dataclass's cached value, built once)."""
        return TrustedProxies.parse(self.forwarded_allow_ips, forwarded=self.trust_forwarded)

    @property
    def default_model_path(self) -> Path:
        return self.data_dir / EXAMPLE_NAME

    @property
    def model_source(self) -> ModelSource:
        """The one model to serve: ``--model`` (a path or a URI), else the example."""
        if self.model_uri is not None:
            return ModelSource("remote", self.model_uri)
        if self.model_path is not None:
            return ModelSource("path", str(self.model_path))
        return ModelSource.example(self.data_dir)

    def with_values(self, **changes: Any) -> Settings:
        """A copy with the given fields changed; a None value leaves its field as it is."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    # Multi-worker servers start fresh processes; they receive the parent's Settings intact.
    def serialize(self) -> str:
        data = dataclasses.asdict(self)
        data["api_key"] = None  # a client's secret; workers never send requests
        return orjson.dumps(data, default=str).decode()

    @classmethod
    def deserialize(cls, text: str) -> Settings:
        data = orjson.loads(text)
        for key in (
            "model_path",
            "model_schema",
            "data_dir",
            "tls_cert",
            "tls_key",
            "api_key_file",
            "reference_profile",
        ):
            if data.get(key) is not None:
                data[key] = Path(data[key])
        data["proxy"] = ProxyEnv(**data["proxy"])
        return cls(**data)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from SERVEPATH_* and the Vertex AI AIP_* variables."""
        env = os.environ if env is None else env
        if env.get(_SERIALIZED_VAR):
            return cls.deserialize(env[_SERIALIZED_VAR])
        values: dict[str, Any] = {"data_dir": default_data_dir(env)}
        _int(values, env, "port", "AIP_HTTP_PORT", "SERVEPATH_PORT")
        _str(values, env, "host", "SERVEPATH_HOST")
        _int(values, env, "workers", "SERVEPATH_WORKERS")
        _str(values, env, "health_route", "AIP_HEALTH_ROUTE", "SERVEPATH_HEALTH_ROUTE")
        _str(values, env, "predict_route", "AIP_PREDICT_ROUTE", "SERVEPATH_PREDICT_ROUTE")
        if env.get("SERVEPATH_MODEL"):
            values.update(model_location(env["SERVEPATH_MODEL"]))
        elif (storage := ModelSource.from_storage_uri(env.get("AIP_STORAGE_URI", ""))) is not None:
            values.update(_source_fields(storage))
        _str(values, env, "gcs_endpoint", "SERVEPATH_GCS_ENDPOINT", "STORAGE_EMULATOR_HOST")
        _str(values, env, "s3_endpoint", "SERVEPATH_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3",
             "AWS_ENDPOINT_URL")  # fmt: skip
        _str(values, env, "model_name", "SERVEPATH_MODEL_NAME")
        _str(values, env, "model_repository", "SERVEPATH_MODEL_REPOSITORY")
        _str(values, env, "model_control", "SERVEPATH_MODEL_CONTROL")
        _str(values, env, "admin_keys", "SERVEPATH_ADMIN_KEYS")
        _str(values, env, "candidate", "SERVEPATH_CANDIDATE")
        _float(values, env, "candidate_weight", "SERVEPATH_CANDIDATE_WEIGHT")
        _str(values, env, "shadow", "SERVEPATH_SHADOW")
        _float(values, env, "shadow_share", "SERVEPATH_SHADOW_SHARE")
        _int(values, env, "max_model_bytes", "SERVEPATH_MAX_MODEL_BYTES")
        _str(values, env, "model_sha256", "SERVEPATH_MODEL_SHA256")
        if env.get("SERVEPATH_ALLOW_HTTP_MODEL"):
            values["allow_http_model"] = _truthy(env["SERVEPATH_ALLOW_HTTP_MODEL"])
        if env.get("SERVEPATH_MODEL_SCHEMA"):
            values["model_schema"] = Path(env["SERVEPATH_MODEL_SCHEMA"])
        if env.get("SERVEPATH_REFERENCE_PROFILE"):
            values["reference_profile"] = Path(env["SERVEPATH_REFERENCE_PROFILE"])
        _int(values, env, "drift_window", "SERVEPATH_DRIFT_WINDOW")
        if env.get("SERVEPATH_PROBABILITIES"):
            values["probabilities"] = _truthy(env["SERVEPATH_PROBABILITIES"])
        echo = env.get("SERVEPATH_PATH_ECHO")
        if echo is not None:
            values["path_echo_route"] = None if echo.lower() in ("", "off", "0", "false") else echo
        ui = env.get("SERVEPATH_UI")
        if ui is not None:
            values["ui_route"] = None if ui.lower() in ("", "off", "0", "false") else ui
        _int(values, env, "max_body_bytes", "SERVEPATH_MAX_BODY_BYTES")
        _int(values, env, "max_instances", "SERVEPATH_MAX_INSTANCES")
        _float(values, env, "grace_period", "SERVEPATH_GRACE_PERIOD")
        _int(values, env, "max_batch", "SERVEPATH_MAX_BATCH")
        _str(values, env, "cache_url", "SERVEPATH_CACHE_URL")
        _float(values, env, "cache_ttl", "SERVEPATH_CACHE_TTL")
        _int(values, env, "cache_max_entries", "SERVEPATH_CACHE_MAX_ENTRIES")
        _int(values, env, "cache_max_bytes", "SERVEPATH_CACHE_MAX_BYTES")
        _str(values, env, "cache_prefix", "SERVEPATH_CACHE_PREFIX")
        _float(values, env, "cache_timeout", "SERVEPATH_CACHE_TIMEOUT")
        _str(values, env, "store_url", "SERVEPATH_STORE_URL")
        _float(values, env, "store_write_timeout", "SERVEPATH_STORE_WRITE_TIMEOUT")
        if env.get("SERVEPATH_DURABLE"):
            values["durable"] = _truthy(env["SERVEPATH_DURABLE"])
        _str(values, env, "log_level", "SERVEPATH_LOG_LEVEL")
        _float(values, env, "request_timeout", "SERVEPATH_REQUEST_TIMEOUT")
        _int(values, env, "max_in_flight", "SERVEPATH_MAX_IN_FLIGHT")
        _auto_float(values, env, "max_queue_wait", "SERVEPATH_MAX_QUEUE_WAIT")
        _auto_int(values, env, "max_connections", "SERVEPATH_MAX_CONNECTIONS")
        _float(values, env, "header_timeout", "SERVEPATH_HEADER_TIMEOUT")
        _float(values, env, "body_timeout", "SERVEPATH_BODY_TIMEOUT")
        values["on_vertex"] = on_vertex(env)
        if values["on_vertex"]:
            values["keepalive_timeout"] = VERTEX_KEEPALIVE_TIMEOUT
        _float(values, env, "keepalive_timeout", "SERVEPATH_KEEPALIVE_TIMEOUT")
        _int(values, env, "shed_status", "SERVEPATH_SHED_STATUS")
        _int(values, env, "backlog", "SERVEPATH_BACKLOG")
        _str(values, env, "on_model_failure", "SERVEPATH_ON_MODEL_FAILURE")
        _float(values, env, "send_timeout", "SERVEPATH_SEND_TIMEOUT")
        _int(values, env, "max_url_bytes", "SERVEPATH_MAX_URL_BYTES")
        _int(values, env, "max_header_bytes", "SERVEPATH_MAX_HEADER_BYTES")
        _int(values, env, "max_headers", "SERVEPATH_MAX_HEADERS")
        if "SERVEPATH_FORWARDED_ALLOW_IPS" in env:
            values["forwarded_allow_ips"] = env["SERVEPATH_FORWARDED_ALLOW_IPS"]
        if env.get("SERVEPATH_TRUST_FORWARDED"):
            values["trust_forwarded"] = _truthy(env["SERVEPATH_TRUST_FORWARDED"])
        if env.get("SERVEPATH_ACCESS_LOG"):
            values["access_log"] = _truthy(env["SERVEPATH_ACCESS_LOG"])
        for key, name in (("tls_cert", "SERVEPATH_TLS_CERT"), ("tls_key", "SERVEPATH_TLS_KEY")):
            if env.get(name):
                values[key] = Path(env[name])
        _int(values, env, "http_redirect_port", "SERVEPATH_HTTP_REDIRECT_PORT")
        _int(values, env, "health_port", "SERVEPATH_HEALTH_PORT")
        if env.get("SERVEPATH_API_KEY_FILE"):
            values["api_key_file"] = Path(env["SERVEPATH_API_KEY_FILE"])
        if env.get("SERVEPATH_PROTECT_HEALTH"):
            values["protect_health"] = _truthy(env["SERVEPATH_PROTECT_HEALTH"])
        _str(values, env, "open_routes", "SERVEPATH_OPEN_ROUTES")
        # OpenTelemetry's own variables too (what an operator injects into every pod): the
        # signal's URL as it is, the general one as a base that the traces path goes under.
        _str(values, env, "otlp_endpoint", "SERVEPATH_OTLP_ENDPOINT",
             "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")  # fmt: skip
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        if "otlp_endpoint" not in values and base:
            values["otlp_endpoint"] = base.rstrip("/") + OTLP_TRACES_PATH
        _float(values, env, "trace_sample", "SERVEPATH_TRACE_SAMPLE")
        _int(values, env, "trace_queue", "SERVEPATH_TRACE_QUEUE")
        _str(values, env, "trace_service_name", "SERVEPATH_TRACE_SERVICE_NAME",
             "OTEL_SERVICE_NAME")  # fmt: skip
        values["in_kubernetes"] = bool(env.get("KUBERNETES_SERVICE_HOST"))
        values["proxy"] = ProxyEnv.from_env(env)
        values["ssl_cert_file"] = env.get("SSL_CERT_FILE") or None
        values["api_key"] = env.get("SERVEPATH_API_KEY", "").strip() or None
        return cls(**values)


#: Variables Vertex AI sets in a custom container (its contract); any one of them says so.
VERTEX_VARIABLES = (
    "AIP_HTTP_PORT",
    "AIP_HEALTH_ROUTE",
    "AIP_PREDICT_ROUTE",
    "AIP_STORAGE_URI",
    "AIP_MODE",
    "AIP_DEPLOYED_MODEL_ID",
)


def on_vertex(env: Mapping[str, str]) -> bool:
    """Whether the environment is a Vertex AI prediction container's."""
    return any(env.get(name) for name in VERTEX_VARIABLES)


#: Where an OTLP/HTTP receiver takes traces.
OTLP_TRACES_PATH = "/v1/traces"


def traces_url(text: str) -> str:
    """An OTLP/HTTP traces URL: ``text`` with the traces path added when it has no path."""
    text = text.strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--otlp-endpoint {text!r} is not an http:// or https:// URL")
    if parts.path in ("", "/"):
        return urllib.parse.urlunsplit(parts._replace(path=OTLP_TRACES_PATH))
    return text


def serialized_env(settings: Settings) -> dict[str, str]:
    """The environment a worker process needs to rebuild ``settings``."""
    return {_SERIALIZED_VAR: settings.serialize()}


def model_location(text: str) -> dict[str, Any]:
    """``--model`` / SERVEPATH_MODEL as the Settings fields it sets: a path or a URI."""
    return _source_fields(ModelSource.parse(text))


def _source_fields(source: ModelSource) -> dict[str, Any]:
    if source.kind == "remote":
        return {"model_uri": source.location, "model_path": None}
    return {"model_path": Path(source.location), "model_uri": None}


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name)
        if value:
            return name, value
    return None


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _str(values: dict[str, Any], env: Mapping[str, str], key: str, *names: str) -> None:
    found = _first(env, names)
    if found:
        values[key] = found[1]


def _int(values: dict[str, Any], env: Mapping[str, str], key: str, *names: str) -> None:
    found = _first(env, names)
    if found:
        try:
            values[key] = int(found[1])
        except ValueError:
            raise ConfigError(f"{found[0]}={found[1]!r} is not a whole number") from None


def _float(values: dict[str, Any], env: Mapping[str, str], key: str, *names: str) -> None:
    found = _first(env, names)
    if found:
        try:
            values[key] = float(found[1])
        except ValueError:
            raise ConfigError(f"{found[0]}={found[1]!r} is not a number") from None


def parse_auto(text: str, name: str, kind: type[float] | type[int]) -> float | int | None:
    """``auto`` (None: servepath decides) or a number of ``kind``."""
    if text.strip().lower() == "auto":
        return None
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name}={text!r} is neither auto nor {what}") from None


def _auto_float(values: dict[str, Any], env: Mapping[str, str], key: str, *names: str) -> None:
    found = _first(env, names)
    if found:
        values[key] = parse_auto(found[1], found[0], float)


def _auto_int(values: dict[str, Any], env: Mapping[str, str], key: str, *names: str) -> None:
    found = _first(env, names)
    if found:
        values[key] = parse_auto(found[1], found[0], int)
