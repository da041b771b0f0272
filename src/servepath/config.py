"""Settings: every environment variable and flag servepath reads, in one place.

Nothing else in servepath reads ``os.environ``. The CLI builds a :class:`Settings`
from the environment plus its flags and passes it down.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from servepath.contract import DEFAULT_HEALTH_ROUTE, DEFAULT_PATH_ECHO_ROUTE, DEFAULT_PREDICT_ROUTE
from servepath.errors import ConfigError

DEFAULT_PORT = 8080
#: Vertex AI's limit for a request to a shared public endpoint.
DEFAULT_MAX_BODY_BYTES = 1_500_000
DEFAULT_MAX_INSTANCES = 1_000
DEFAULT_GRACE_PERIOD = 20.0
DEFAULT_MODEL_NAME = "decision"

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
    data_dir: Path = field(default_factory=lambda: default_data_dir(os.environ))
    health_route: str = DEFAULT_HEALTH_ROUTE
    predict_route: str = DEFAULT_PREDICT_ROUTE
    path_echo_route: str | None = DEFAULT_PATH_ECHO_ROUTE
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
    durable: bool = False
    log_level: str = "info"
    aip_mode: str | None = None
    in_kubernetes: bool = False
    proxy: ProxyEnv = field(default_factory=ProxyEnv)

    def __post_init__(self) -> None:
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

    @property
    def default_model_path(self) -> Path:
        return self.data_dir / "example-model.joblib"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    # Multi-worker servers start fresh processes; they receive the parent's Settings intact.
    def serialize(self) -> str:
        data = dataclasses.asdict(self)
        return orjson.dumps(data, default=str).decode()

    @classmethod
    def deserialize(cls, text: str) -> Settings:
        data = orjson.loads(text)
        for key in ("model_path", "data_dir"):
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
        elif env.get("AIP_STORAGE_URI", "").startswith("/"):
            values["model_path"] = _model_in_dir(Path(env["AIP_STORAGE_URI"]))
        elif is_model_uri(env.get("AIP_STORAGE_URI", "")):
            values["model_uri"] = env["AIP_STORAGE_URI"]
        _str(values, env, "gcs_endpoint", "SERVEPATH_GCS_ENDPOINT", "STORAGE_EMULATOR_HOST")
        _str(values, env, "s3_endpoint", "SERVEPATH_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3",
             "AWS_ENDPOINT_URL")  # fmt: skip
        _str(values, env, "model_name", "SERVEPATH_MODEL_NAME")
        echo = env.get("SERVEPATH_PATH_ECHO")
        if echo is not None:
            values["path_echo_route"] = None if echo.lower() in ("", "off", "0", "false") else echo
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
        if env.get("SERVEPATH_DURABLE"):
            values["durable"] = env["SERVEPATH_DURABLE"].lower() in ("1", "true", "yes", "on")
        _str(values, env, "log_level", "SERVEPATH_LOG_LEVEL")
        _str(values, env, "aip_mode", "AIP_MODE")
        values["in_kubernetes"] = bool(env.get("KUBERNETES_SERVICE_HOST"))
        values["proxy"] = ProxyEnv.from_env(env)
        return cls(**values)


def serialized_env(settings: Settings) -> dict[str, str]:
    """The environment a worker process needs to rebuild ``settings``."""
    return {_SERIALIZED_VAR: settings.serialize()}


def is_model_uri(text: str) -> bool:
    """A model in cloud storage rather than a local path: gs://, s3://, http(s)://."""
    return bool(re.match(r"^(gs|s3|https?)://", text.strip(), re.IGNORECASE))


def model_location(text: str) -> dict[str, Any]:
    """``--model`` / SERVEPATH_MODEL as the Settings fields it sets: a path or a URI."""
    if is_model_uri(text):
        return {"model_uri": text.strip(), "model_path": None}
    return {"model_path": Path(text), "model_uri": None}


def _model_in_dir(directory: Path) -> Path:
    # Vertex AI copies the artifact directory and names it in AIP_STORAGE_URI.
    for name in ("model.onnx", "model.joblib", "model.pkl"):
        if (directory / name).exists():
            return directory / name
    return directory / "model.joblib"


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name)
        if value:
            return name, value
    return None


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
