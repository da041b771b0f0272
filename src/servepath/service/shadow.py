"""Shadow traffic: copies of sampled requests for a version no caller sees, after the answers.

A request answered by the primary (or the candidate) is offered here with its rows and its
answer. It is copied to the shadow only if it is sampled (``--shadow-share``, decided by the
request's record id, so the same request is always in or out) and the server has room:
nothing refused in the last second, under half the in-flight bound, and under half the
queueing bound. Shadow work is the first thing shed, and never makes a caller wait — it runs
after the answer was written, on the shadow's own batcher, and is not counted as the
service time admission control learns from.

Each copy's answers are compared with what the caller got — the same decision for a
classifier; for a score or a regression value, equal within :data:`AGREE_TOLERANCE` — and
counted (``servepath_shadow_total``), and recorded in the prediction log with ``role``
``shadow`` and ``shadow_of`` naming the caller's record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from servepath.model.loaded import Output, Row
from servepath.service.deployments import Deployment, in_share
from servepath.service.predict import Prediction
from servepath.service.request import RequestMeta
from servepath.store.base import Route

if TYPE_CHECKING:
    from servepath.service.dataplane import DataPlane

log = logging.getLogger(__name__)

__all__ = ["AGREE_TOLERANCE", "MAX_SHADOW_ROWS", "ShadowRunner", "agrees"]

#: Two numeric answers agree when they differ by at most this (relative past magnitude 1).
AGREE_TOLERANCE = 1e-6
#: Rows of shadow work waiting or running at once, past which copies are skipped.
MAX_SHADOW_ROWS = 256
#: The event loop running this late (seconds) means no room for a copy.
MAX_LAG_S = 0.01


def _value(output: Output) -> Any:
    return output.get("decision", output.get("value"))


def agrees(primary: Output, shadow: Output) -> bool:
    """Whether two answers to one instance say the same thing."""
    a, b = _value(primary), _value(shadow)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if not isinstance(a, int | float):
        return bool(a == b)
    if not isinstance(b, int | float):
        return False
    return abs(a - b) <= AGREE_TOLERANCE * max(1.0, abs(a))


class ShadowRunner:
    """Offers copies to the data plane's shadow version; see the module docstring."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        #: Rows of shadow work in progress.
        self.rows = 0
        #: Instances by outcome, in this process (the page shows them; metrics count too).
        self.outcomes = {"agree": 0, "disagree": 0, "error": 0, "skipped": 0}

    def counts(self) -> dict[str, int] | None:
        """The outcomes so far, or None when there is no shadow."""
        return dict(self.outcomes) if self.plane.shadow is not None else None

    def _count(self, version: str, outcome: str, n: int) -> None:
        self.outcomes[outcome] += n
        self.plane.metrics.count_shadow(version, outcome, n)

    def room(self) -> bool:
        """Whether the server can spare the shadow's work now: nothing refused in the last
        second, nobody waiting for a model call, the event loop on time, and no other copy
        in progress — so a copy delays a caller by at most one call of the shadow's."""
        plane = self.plane
        admission = plane.admission
        if self.rows or admission.turned_away(time.perf_counter()):
            return False
        if admission.loop_lag > MAX_LAG_S:
            return False
        return all(d.batcher.queued_rows == 0 for d in (plane.primary, plane.candidate)
                   if d is not None)  # fmt: skip

    def offer(
        self,
        rows: Sequence[Row],
        prediction: Prediction,
        meta: RequestMeta,
        answered_by: Deployment,
        route: Route,
    ) -> None:
        plane = self.plane
        shadow = plane.shadow
        if shadow is None or shadow is answered_by or shadow.retired:
            return
        if not in_share(meta.record_id or meta.request_id, plane.shadow_share * 100):
            return
        if len(rows) > MAX_SHADOW_ROWS or not self.room():
            self._count(shadow.label, "skipped", len(rows))
            return
        shadow.enter()
        self.rows += len(rows)
        plane.spawn(self._run(shadow, list(rows), prediction, meta, route))

    async def _run(
        self,
        shadow: Deployment,
        rows: list[Row],
        prediction: Prediction,
        meta: RequestMeta,
        route: Route,
    ) -> None:
        metrics = self.plane.metrics
        try:
            # Yield first: the caller's answer is written before the copy runs.
            await asyncio.sleep(0)
            started = time.perf_counter()
            try:
                outputs, model_ms = await shadow.batcher.predict(rows)
            except Exception as exc:
                self._count(shadow.label, "error", len(rows))
                log.debug("shadow %s failed on a copy: %s", shadow.label, exc)
                return
            elapsed_ms = (time.perf_counter() - started) * 1000
            agreed = sum(agrees(p, s) for p, s in zip(prediction.outputs, outputs, strict=True))
            if agreed:
                self._count(shadow.label, "agree", agreed)
            if agreed < len(rows):
                self._count(shadow.label, "disagree", len(rows) - agreed)
            if prediction.model_ms is not None:
                metrics.add_shadow_seconds(prediction.model_ms / 1000, model_ms / 1000)
            if shadow.pipeline.store.enabled:
                shadow.pipeline.log_shadow(route, rows, outputs, meta, elapsed_ms)
        finally:
            self.rows -= len(rows)
            shadow.leave()
