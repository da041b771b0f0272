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

#: Field errors one answer lists; past them only a count (validation stops soon after).
MAX_ERRORS = 20
#: Characters of a caller's value an error message echoes.
ECHO_CHARS = 64


def clip(value: object, limit: int = ECHO_CHARS) -> str:
    """``value`` as text, cut to ``limit`` characters (with an ellipsis) for an error message:
    an answer never echoes more of a caller's input than this."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = str(value)
        except (ValueError, RecursionError):  # past Python's digit limit; nested 1,000 deep
            return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[:limit] + "…"


def shown(value: object, limit: int = ECHO_CHARS) -> str:
    """A caller's value for an error message: a string quoted, anything else as text, cut to
    ``limit`` characters either way; never raises, whatever JSON produced ``value``."""
    return repr(clip(value, limit)) if isinstance(value, str) else clip(value, limit)


class RequestError(ServepathError):
    """The caller sent something the service will not process."""


class MalformedJSON(RequestError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"request body is not valid JSON: {reason}")
        self.reason = reason


class DuplicateKey(MalformedJSON):
    """One JSON object names the same key twice: parsers disagree on which one counts (orjson
    keeps the last, some proxies and filters the first), so neither is believed."""

    def __init__(self, key: str) -> None:
        RequestError.__init__(self, f"request body has the key {clip(key)!r} twice in one object")
        self.reason = "duplicate key"
        self.key = key


class UnsupportedMediaType(RequestError):
    def __init__(self, content_type: str) -> None:
        super().__init__(
            f"content type {clip(content_type)!r} is not supported; send application/json"
        )
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
    """What is wrong with the input: at most :data:`MAX_ERRORS` field errors listed, ``more``
    counted beyond them, and ``stopped`` when validation gave up before the end (so that one
    hostile body cannot buy megabytes of errors)."""

    errors: list[FieldError] = field(default_factory=list)
    more: int = 0
    stopped: bool = False

    def __post_init__(self) -> None:
        if len(self.errors) > MAX_ERRORS:
            self.more += len(self.errors) - MAX_ERRORS
            del self.errors[MAX_ERRORS:]
        Exception.__init__(self, self.summary())

    def summary(self) -> str:
        shown = "; ".join(
            f"{'.'.join(str(p) for p in e.loc)}: {e.msg}" if e.loc else e.msg
            for e in self.errors[:5]
        )
        hidden = len(self.errors) - min(5, len(self.errors)) + self.more
        more = f" (and {hidden}{'+' if self.stopped else ''} more)" if hidden else ""
        if self.stopped and not hidden:
            more = " (and possibly more: validation stopped)"
        return f"invalid input: {shown}{more}"


class RequestAborted(RequestError):
    """The caller hung up before its request's body had arrived."""

    def __init__(self) -> None:
        super().__init__("the caller closed the connection before sending the whole body")


# --- the service cannot take the request now (mapped to 503 with Retry-After) -------------


class ServiceUnavailable(ServepathError):
    """The service cannot serve this request now; ``retry_after`` (s) says when to try."""

    retry_after: int = 1
    reason: str = "unavailable"


class Overloaded(ServiceUnavailable):
    """Admitting the request would push the work in the building past its bound."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(f"the server is overloaded: {detail}; retry in {retry_after} s")
        self.detail = detail
        self.retry_after = retry_after
        self.reason = "overloaded"


class RequestExpired(ServiceUnavailable):
    """The request's deadline passed (or its caller left) before the model could run it."""

    def __init__(self, reason: str, waited_s: float, retry_after: int = 1) -> None:
        what = {
            "deadline": "the request's deadline passed",
            "gone": "the caller hung up",
        }.get(reason, reason)
        super().__init__(f"{what} after {waited_s:.3f} s in the queue, before the model ran it")
        self.reason = reason
        self.waited_s = waited_s
        self.retry_after = retry_after


class LogUnavailable(ServiceUnavailable):
    """The prediction log can keep no record: neither its database nor its spool takes one.

    With ``--durable`` a prediction is answered only once its record is kept, so such a
    request is refused (503) naming the cause rather than failed with a 500.
    """

    def __init__(self, cause: str) -> None:
        super().__init__(f"the prediction log cannot keep records: {cause}")
        self.cause = cause
        self.reason = "log_unavailable"
        self.retry_after = 5


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
