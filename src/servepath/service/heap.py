"""Giving the heap's free pages back to the operating system after a burst of TLS connections.

Each TLS connection holds a 256 KiB read buffer from the loop's TLS protocol (uvloop), for
its handshake and its whole life. Once such buffers have been freed, glibc's malloc serves
the next ones from its main heap instead of fresh mappings, and returns heap memory to the
system only from the heap's top: after every burst of connections the process keeps what it
touched, and the resident size climbs from burst to burst towards the largest burst's size
(2,000 connections opened and closed five times: +200 MB that stays, almost all of it free
heap, as ``mallinfo2`` shows). Nothing is leaked in Python's sense: no object survives.

:class:`HeapTrim` watches the number of open connections and, once it has fallen by
:data:`TRIM_AFTER` since its peak, calls ``malloc_trim(0)``, which hands the free pages inside
the heap back (``madvise``); a tenth of a millisecond on that heap, at most once per
:data:`TRIM_INTERVAL`, never on a request's path. Where the C library has no ``malloc_trim``
(musl, macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable

#: Connections that must have ended since the peak before the heap is trimmed (64 TLS read
#: buffers are 16 MiB).
TRIM_AFTER = 64
#: Seconds between two looks at the connection count while connections come and go.
TRIM_INTERVAL = 1.0


def _malloc_trim() -> Callable[[], object] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


_TRIM = _malloc_trim()


class HeapTrim:
    """``accepted()`` on each new connection; trims after the count has fallen enough."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        count: Callable[[], int],
        *,
        trim: Callable[[], object] | None = _TRIM,
        after: int = TRIM_AFTER,
        interval: float = TRIM_INTERVAL,
    ) -> None:
        self.loop = loop
        self.count = count
        self.trim = trim
        self.after = after
        self.interval = interval
        self.peak = 0
        self.trims = 0
        self._timer: asyncio.TimerHandle | None = None

    def accepted(self) -> None:
        if self.trim is None:
            return
        self.peak = max(self.peak, self.count())
        if self._timer is None:
            self._timer = self.loop.call_later(self.interval, self._look)

    def _look(self) -> None:
        self._timer = None
        now = self.count()
        if self.peak - now >= self.after and self.trim is not None:
            self.trim()
            self.trims += 1
            self.peak = now
        if now > 0:
            # Connections remain and may still end: look again. An idle server stops here.
            self._timer = self.loop.call_later(self.interval, self._look)
        else:
            self.peak = 0

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
