"""One tree of servepath errors. Status codes and exit codes are assigned at the edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ServepathError(Exception):
    """Root of every error servepath raises on purpose."""


class ConfigError(ServepathError):
    """A setting, flag or environment variable has a value servepath cannot use."""


class ModelLoadError(ServepathError):
    """The model artifact could not be read or does not look like a model servepath can serve."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot load model {path!r}: {reason}")
        self.path = path
        self.reason = reason


# --- request errors (mapped to 4xx by service.errors) ---------------------------------


class RequestError(ServepathError):
    """The caller sent something the service will not process."""


class MalformedJSON(RequestError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"request body is not valid JSON: {reason}")
        self.reason = reason


class UnsupportedMediaType(RequestError):
    def __init__(self, content_type: str) -> None:
        super().__init__(f"content type {content_type!r} is not supported; send application/json")
        self.content_type = content_type


class PayloadTooLarge(RequestError):
    def __init__(self, limit: int, size: int | None = None) -> None:
        got = f"{size} bytes" if size is not None else "more"
        super().__init__(f"request body is {got}; the limit is {limit} bytes")
        self.limit = limit
        self.size = size


class TooManyInstances(RequestError):
    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} instances in one request; the limit is {limit}")
        self.count = count
        self.limit = limit


@dataclass(frozen=True)
class FieldError:
    """One offending field: where it is (JSON path), what is wrong, and a short type tag."""

    loc: tuple[str | int, ...]
    msg: str
    type: str

    def to_json(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


@dataclass
class InvalidInput(RequestError):
    errors: list[FieldError] = field(default_factory=list)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.summary())

    def summary(self) -> str:
        shown = "; ".join(f"{'.'.join(str(p) for p in e.loc)}: {e.msg}" for e in self.errors[:5])
        more = f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        return f"invalid input: {shown}{more}"


class ModelNotReady(ServepathError):
    def __init__(self, state: str) -> None:
        super().__init__(f"the model is not ready ({state})")
        self.state = state


class PredictionFailed(ServepathError):
    """The model raised while predicting: a server fault, not the caller's."""


# --- categories the CLI maps to exit codes (usage: 2) ----------------------------------


class UsageError(ServepathError):
    """What the user asked for cannot be done as asked: a bad argument, option or target."""


class EndpointError(UsageError, ValueError):
    """A ``host:port`` (or address) written in a way servepath cannot read."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r}: {reason}")
        self.text = text
        self.reason = reason
