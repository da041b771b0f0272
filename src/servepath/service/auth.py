"""API keys: who may call which route. Pure; the app asks, the HTTP edge answers 401.

The key file holds one ``name:key`` per line (``#`` comments and blank lines allowed). A
caller presents a key as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; it is hashed
and compared with every known key's hash in constant time, so neither the comparison nor
the number of keys compared says how close a guess came. What the rest of the server sees
is the key's *name* (log, metrics, access log), never the key.

Which routes need a key, once a key file is given:

* prediction (the predict routes, V2 inference and model metadata), ``/metrics``, the path
  echo, ``/docs`` and ``/openapi.json``: a key, unless opened with ``--open-routes``;
* health (``/``, the configured health route, ``/v2/health/*``, ``/v2``, a model's
  ``…/ready``): open, unless
  ``--protect-health``; an orchestrator's probe carries no key;
* the login page (``/_ui/login``): open; it is where a person presents a key and gets a
  session cookie (:mod:`servepath.service.session`), which opens the live page, ``/docs`` and
  ``/openapi.json`` — never a prediction route.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import stat
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from servepath.errors import ConfigError

log = logging.getLogger(__name__)

#: Shorter keys are refused: a key is a password that a machine types.
MIN_KEY_LENGTH = 16
#: Seconds a key file may take to read (at start and on SIGHUP) before it is given up on.
KEY_FILE_TIMEOUT = 5.0
#: A key file larger than this is no key file.
MAX_KEY_FILE_BYTES = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
#: The characters of a key: what survives a header intact (RFC 6750's b64token and more).
_KEY = re.compile(r"^[\x21-\x7e]+$")


@dataclass(frozen=True)
class Identity:
    """The outcome of checking a request's credentials."""

    name: str | None  # the key's name, when one matched
    problem: str | None = None  # "missing" or "invalid" when none did

    @property
    def ok(self) -> bool:
        return self.name is not None


@dataclass(frozen=True)
class KeyRing:
    """The known keys, as (name, SHA-256 of the key)."""

    keys: tuple[tuple[str, bytes], ...]
    source: str = ""

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.keys)

    def identify(self, presented: str | None) -> Identity:
        """Which key ``presented`` is; every known key is compared, in constant time."""
        if not presented:
            return Identity(None, "missing")
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: str | None = None
        for name, known in self.keys:
            if hmac.compare_digest(digest, known):
                found = name
        return Identity(found) if found is not None else Identity(None, "invalid")


def parse_key_file(text: str, source: str = "the key file") -> KeyRing:
    """The keys of a key file; ConfigError naming the line (never the key) when one is bad."""
    keys: list[tuple[str, bytes]] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, key = line.partition(":")
        name, key = name.strip(), key.strip()
        where = f"{source} line {number}"
        if not sep or not key:
            raise ConfigError(f"{where}: expected NAME:KEY")
        if not _NAME.match(name):
            raise ConfigError(f"{where}: the name {name!r} must be 1-64 letters, digits or . _ @ -")
        if not _KEY.match(key):
            raise ConfigError(f"{where}: the key of {name!r} has spaces or non-ASCII characters")
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"{where}: the key of {name!r} is {len(key)} characters; at least "
                f"{MIN_KEY_LENGTH} are needed (e.g. `openssl rand -hex 32`)"
            )
        digest = hashlib.sha256(key.encode()).digest()
        if name in names:
            raise ConfigError(f"{where}: the name {name!r} is given twice")
        if digest in digests:
            raise ConfigError(f"{where}: the key of {name!r} is another name's key too")
        names.add(name)
        digests.add(digest)
        keys.append((name, digest))
    if not keys:
        raise ConfigError(f"{source} holds no keys (one NAME:KEY per line)")
    return KeyRing(tuple(keys), source)


def load_key_file(path: Path, *, timeout: float = KEY_FILE_TIMEOUT) -> KeyRing:
    """The keys of the file at ``path``: a regular file, read within ``timeout`` seconds.

    A FIFO, a device or a directory is refused (opening a FIFO waits for a writer); a read
    that hangs (a dead network mount) gives up after ``timeout`` — the reading thread is
    left behind, the caller is not. A UTF-8 byte-order mark is skipped. A file that group or
    others may read is accepted with a warning, as libpq and sshd's clients do.
    """
    result: list[bytes | BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            result.append(_read_regular(path))
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)
        finally:
            done.set()

    threading.Thread(target=read, name="servepath-key-file", daemon=True).start()
    if not done.wait(timeout):
        raise ConfigError(f"--api-key-file {path}: not read within {timeout:g} s (a hung mount?)")
    outcome = result[0]
    if isinstance(outcome, FileNotFoundError):
        raise ConfigError(f"--api-key-file {path}: no such file") from None
    if isinstance(outcome, ConfigError):
        raise outcome
    if isinstance(outcome, BaseException):
        raise ConfigError(f"--api-key-file {path}: cannot read it: {outcome}") from outcome
    try:
        text = outcome.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--api-key-file {path}: cannot read it: {exc}") from exc
    return parse_key_file(text, str(path))


def _read_regular(path: Path) -> bytes:
    # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer; the type
    # is checked on the open descriptor, so a file swapped after the check is not read.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                f"--api-key-file {path}: not a regular file (a FIFO, a device or a directory)"
            )
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise ConfigError(
                f"--api-key-file {path}: {info.st_size} bytes; a key file holds at most "
                f"{MAX_KEY_FILE_BYTES}"
            )
        if info.st_mode & 0o077:
            log.warning(
                "--api-key-file %s is readable by group or others (mode %04o): "
                "chmod 600 it, as for an SSH key",
                path,
                stat.S_IMODE(info.st_mode),
            )
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            return f.read(MAX_KEY_FILE_BYTES + 1)
    finally:
        if fd >= 0:
            os.close(fd)


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY``, else ``X-API-Key``."""
    api_key: str | None = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1").strip() or None
    return api_key


@dataclass(frozen=True)
class AccessPolicy:
    """Which routes need a key. ``open_routes``: paths opened despite the keys."""

    keys: KeyRing | None
    protect_health: bool = False
    open_routes: frozenset[str] = frozenset()
    #: Routes that never need a key: the login page, where a person presents one.
    public: frozenset[str] = frozenset()

    def needs_key(self, path: str, *, health: bool) -> bool:
        if self.keys is None or path in self.open_routes or path in self.public:
            return False
        return self.protect_health or not health

    def describe(self) -> str:
        if self.keys is None:
            return "no API keys: every route is open"
        opened = f"; open: {', '.join(sorted(self.open_routes))}" if self.open_routes else ""
        health = "health needs a key" if self.protect_health else "health is open"
        count = len(self.keys)
        keys = f"{count} API key{'' if count == 1 else 's'}"
        return f"{keys} ({', '.join(self.keys.names)}); {health}{opened}"


def parse_open_routes(text: str | Sequence[str]) -> frozenset[str]:
    parts = text.split(",") if isinstance(text, str) else list(text)
    routes = frozenset(p.strip() for p in parts if p.strip())
    for route in routes:
        if not route.startswith("/"):
            raise ConfigError(f"--open-routes: {route!r} is not a path (it must start with /)")
    return routes


def challenge(problem: str | None) -> bytes:
    """The ``WWW-Authenticate`` value of a 401 (RFC 6750)."""
    if problem == "invalid":
        return b'Bearer realm="servepath", error="invalid_token"'
    return b'Bearer realm="servepath"'
