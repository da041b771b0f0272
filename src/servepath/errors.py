"""One tree of servepath errors. Status codes and exit codes are assigned at the edges.

Two categories sit under :class:`ServepathError`, and the command line maps each once
(``servepath.cli._app``):

- :class:`UsageError` — what was asked cannot be done as asked (a flag, a setting, a
  target, a file to read or write): exit 2.
- :class:`ProblemFound` — the thing probed is unhealthy or unreachable: exit 1.
- any other :class:`ServepathError` is a failure (the work could not be carried out): exit
  1 too, since to the caller of a command it is not a usage error, and scripts read 1 as
  "not ok".

Each error names its failure (``failure``, the word ``--json`` prints), may carry
``hints``, and ``details()`` adds what else a JSON document of it should say.

Errors that stay beside their code, and why:
- ``netdiag.doctor.plan.DoctorUsageError``: the doctor's own usage error, a
  :class:`UsageError`, raised and read only inside the doctor's plan.
- ``model.compiled.NotCompilable``: control flow inside the compiler (the model falls back
  to its own engine); it never leaves that module, so it is no ``ServepathError``.
- the service's private signals (``service.protocol``, ``service.app``): they never leave
  the connection or the app that raises them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from servepath.client import RequestResult


class ServepathError(Exception):
    """Root of every error servepath raises on purpose."""

    #: The failure's name in a JSON document (``{"ok": false, "failure": ...}``).
    failure: str = "failed"
    #: What the user can do about it, one sentence each.
    hints: tuple[str, ...] = ()

    def details(self) -> dict[str, Any]:
        """What a JSON document of this error says besides its failure, message and hints."""
        return {}


# --- categories the CLI maps to exit codes ------------------------------------------------


class UsageError(ServepathError):
    """What the user asked for cannot be done as asked: a bad argument, option or target."""

    failure = "usage"


class ProblemFound(ServepathError):
    """The thing probed is unhealthy or unreachable: the command did its job and found it."""

    failure = "problem"


class ConfigError(UsageError):
    """A setting, flag or environment variable has a value servepath cannot use."""


class ModelDigestMismatch(ConfigError):
    """The model artifact is not the one ``--model-sha256`` pins: it is never loaded."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(
            f"model {path} has SHA-256 {actual}, not the {expected} that --model-sha256 "
            "pins: refusing to load it (loading a joblib/pickle file runs its code)"
        )


class ModelLoadError(ServepathError):
    """The model artifact could not be read or does not look like a model servepath can serve."""

    failure = "model_load"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot load model {path!r}: {reason}")
        self.path = path
        self.reason = reason


class ModelTooLarge(ModelLoadError):
    """The artifact is larger than ``--max-model-bytes``: refused before it loads."""

    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(path, f"{size:,} bytes, over the {limit:,}-byte bound (--max-model-bytes)")
        self.size = size
        self.limit = limit


class ModelVerificationFailed(ModelLoadError):
    """The model loaded but does not answer its own example as it declares."""


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


class UnknownVersion(RequestError):
    """A request names a model version this server does not hold (404)."""

    def __init__(self, wanted: str, known: str) -> None:
        super().__init__(f"no model version {clip(wanted)!r} here; {known}")
        self.wanted = wanted


class ControlRefused(RequestError):
    """A model-control call that cannot be carried out as asked (409): another load is in
    progress, or it would leave no version serving."""


class ControlForbidden(RequestError):
    """A model-control call from a key that is not an admin key (403)."""


class VersionRefused(RequestError):
    """A version that failed its load or its verification (400); what serves is unchanged.
    ``reason`` is one word for the kind of failure, ``detail`` the whole story."""

    def __init__(self, label: str, reason: str, detail: str) -> None:
        super().__init__(
            f"version {label!r} not loaded ({reason}): {detail}; the serving version is unchanged"
        )
        self.label = label
        self.reason = reason
        self.detail = detail


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
    """One offending field: where it is (JSON path), what is wrong, and a short type tag;
    ``where`` says the place in words when the JSON path alone would mislead a reader."""

    loc: tuple[str | int, ...]
    msg: str
    type: str
    where: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loc": list(self.loc), "msg": self.msg, "type": self.type}
        if self.where is not None:
            out["where"] = self.where
        return out

    def place(self) -> str:
        return self.where if self.where is not None else ".".join(str(p) for p in self.loc)


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
            f"{e.place()}: {e.msg}" if e.loc or e.where else e.msg for e in self.errors[:5]
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


# --- usage errors ---------------------------------------------------------------------------


class EndpointError(UsageError, ValueError):
    """A ``host:port`` (or address) written in a way servepath cannot read."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r}: {reason}")
        self.text = text
        self.reason = reason


class ResolverSpecError(EndpointError):
    """A ``--resolver`` value that is not ``IP`` or ``IP:PORT``."""

    def __init__(self, spec: str, reason: str) -> None:
        super().__init__(spec, reason)
        # the message names the option; .text and .reason stay as EndpointError sets them
        self.args = (f"bad resolver {spec!r}: {reason}",)
        self.spec = spec


class PortSpecError(UsageError):
    """A PORTS argument that does not parse; the message names the offending item."""

    def __init__(self, spec: str, item: str, reason: str) -> None:
        super().__init__(f"bad port {item!r} in {spec!r}: {reason}")
        self.spec = spec
        self.item = item
        self.reason = reason


class UnknownRegion(UsageError):
    """A region id that is not in the catalogue; carries the closest ids to suggest."""

    def __init__(self, region_id: str, suggestions: Sequence[str]) -> None:
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(
            f"unknown region {region_id!r}{hint} (`servepath regions list` shows them all)"
        )
        self.region_id = region_id
        self.suggestions = tuple(suggestions)


class BadCallers(UsageError):
    """The caller list or its weights cannot be used for placement."""


class BadTarget(UsageError):
    """A measurement target that cannot be parsed."""


class InputNotRead(UsageError):
    """A file the user named to read from (``--data FILE``, or stdin) cannot be read."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"cannot read {source}: {reason}")
        self.source = source
        self.reason = reason


class ReportNotWritten(UsageError):
    """The picture could not be written where the caller asked (the path is the user's)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.path = path
        self.reason = reason


# --- problems found -------------------------------------------------------------------------


class ResolveError(ProblemFound):
    """HOST is neither an IP literal nor a name the system resolver knows."""

    failure = "dns"

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"cannot resolve {host!r}: {reason}")
        self.host = host
        self.reason = reason


class StoreUnavailable(ProblemFound):
    """The prediction log cannot be read: no such file, no such database, or no answer."""

    failure = "store_unavailable"

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"cannot read the prediction log at {target}: {reason}")
        self.target = target
        self.reason = reason

    def details(self) -> dict[str, Any]:
        return {"store": self.target}


class NothingToCompare(ProblemFound):
    """A drift's window of the prediction log (current or reference) holds no prediction."""

    failure = "no_data"

    def __init__(self, message: str, hints: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.hints = tuple(hints)


class ExampleUnavailable(ProblemFound):
    """The server's OpenAPI document has no example for the route (or there is no document)."""

    def __init__(
        self,
        message: str,
        *,
        failure: str = "no_example",
        result: RequestResult | None = None,
        hints: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.failure = failure
        self.result = result
        self.hints = tuple(result.hints) if result is not None else tuple(hints)


class ClientFailure(ProblemFound):
    """A request did not get an answer: the named failure and the request it ended."""

    def __init__(self, result: RequestResult) -> None:
        super().__init__(f"{result.failure}: {result.message}")
        self.result = result
        self.failure = result.failure or "other"
        self.hints = tuple(result.hints)


class PayloadError(ProblemFound):
    """The server's document gives no instance to send in a load run."""

    failure = "no_example"


# --- failures: the work could not be carried out ------------------------------------------


class TraceError(ServepathError):
    """The trace could not be run at all (no route, a local rule, no ICMP permission)."""

    failure = "trace_failed"


class LoadError(ServepathError):
    """A load run could not be carried out."""

    failure = "load_failed"


class BindFailed(ServepathError):
    """The server could not take its port (in use, not permitted, no such address)."""

    failure = "bind"


class ExampleModelNotWritten(ServepathError):
    """The example model could not be trained into the data directory."""

    failure = "model"

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot write the example model: {reason}")
        self.reason = reason


class CacheUnavailable(ServepathError):
    """The cache could not answer within its timeout, or is backing off after failures."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend} cache unavailable: {reason}")
        self.backend = backend
        self.reason = reason


class StoreError(LogUnavailable):
    """The prediction log could not keep a record: neither the database nor the spool took it."""


class StoreClosed(StoreError):
    def __init__(self) -> None:
        super().__init__("the prediction log is closed")
