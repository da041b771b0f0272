"""Warnings that can repeat thousands of times a second, logged at most once per interval.

A failing backend under load fails every request: one line per failure would bury the log
(17,400 lines in 45 s were seen with a lagging Redis) and cost the loop the time to write
them. The first failure is logged at once; later ones are counted and reported, with the
last reason, when the interval has passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedWarning:
    """``note(reason)`` logs ``message`` with the reason at most once per ``interval``."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.message = message
        self.interval = interval
        self._clock = clock
        self._next = 0.0
        self._suppressed = 0
        self.total = 0

    def note(self, reason: str) -> None:
        self.total += 1
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            self.logger.warning(
                "%s: %s (and %d more like it in the last %.0f s)",
                self.message,
                reason,
                self._suppressed,
                self.interval,
            )
        else:
            self.logger.warning("%s: %s", self.message, reason)
        self._suppressed = 0
        self._next = now + self.interval
