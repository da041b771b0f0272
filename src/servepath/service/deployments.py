"""Versions in service: which one answers a caller, and when a retired one lets go.

A :class:`Deployment` is one loaded version with the batcher and the predict pipeline of its
own. The data plane keeps up to three at once in three *roles*: the **primary** answers
every caller the others do not; a **candidate** (canary) answers a fixed share of callers;
a **shadow** answers no one — it sees copies of sampled requests after their answers went
out, and its outputs only reach the prediction log.

A request holds its deployment from the moment it is routed until its answer is made
(:meth:`Deployment.enter` / :meth:`Deployment.leave`), so a swap never changes the version
under a request in progress: the old version keeps its batcher until its last request
leaves, and only then is closed (its memory goes with the last reference).

Routing is pure (:func:`bucket`, :func:`in_share`): a caller's identity (its API key's
name, else the address the server believes) is hashed to one of 10,000 buckets, and the
candidate answers the buckets below its weight. The same caller therefore always lands on
the same side, raising the weight only moves callers from primary to candidate (never
back), and a new candidate at the same weight reaches the same callers.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from servepath.config import DEFAULT_CANDIDATE_WEIGHT, DEFAULT_SHADOW_SHARE
from servepath.model.batcher import MicroBatcher
from servepath.model.loaded import LoadedModel
from servepath.service.predict import PredictPipeline
from servepath.service.sketch import Sketch

log = logging.getLogger(__name__)

__all__ = [
    "BUCKETS",
    "DEFAULT_CANDIDATE_WEIGHT",
    "DEFAULT_SHADOW_SHARE",
    "Deployment",
    "Role",
    "VersionState",
    "bucket",
    "in_share",
]

Role = Literal["primary", "candidate", "shadow"]
#: A version's state as the model repository extension names it.
VersionState = Literal["READY", "LOADING", "UNAVAILABLE"]
#: Callers are spread over this many buckets: shares are set in hundredths of a percent.
BUCKETS = 10_000


def bucket(identity: str) -> int:
    """The caller's bucket, 0 to 9,999: the same identity always gives the same bucket."""
    digest = hashlib.blake2b(identity.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_share(identity: str, percent: float) -> bool:
    """Whether ``identity`` falls in the first ``percent`` % of callers."""
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    return bucket(identity) < round(percent * BUCKETS / 100)


@dataclass(eq=False)
class Deployment:
    """One loaded version in service: its model, batcher and pipeline, and who holds it."""

    label: str
    model: LoadedModel
    batcher: MicroBatcher
    pipeline: PredictPipeline
    role: Role = "primary"
    #: Requests routed to this version whose answers are not made yet.
    in_flight: int = 0
    #: Requests this version answered (in this process).
    answered: int = 0
    #: Taken out of service: closed when the last request in flight leaves.
    retired: bool = False
    closed: bool = False
    #: Called once, after the batcher closed (the data plane frees what the model held).
    on_closed: Callable[[Deployment], None] | None = None
    #: Where this version's callers' rows are noted for live drift (None: nowhere).
    sketch: Sketch | None = None

    @property
    def version(self) -> str:
        """The artifact's content version (12 hex digits of its SHA-256)."""
        return self.model.version

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.retired and self.in_flight <= 0:
            self._close()

    def retire(self) -> None:
        """Out of service: close now if idle, else when the last request leaves."""
        self.retired = True
        if self.in_flight <= 0:
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.batcher.close()
        log.info("model version %s (%s) unloaded", self.label, self.version)
        if self.on_closed is not None:
            self.on_closed(self)

    def describe(self) -> dict[str, object]:
        return {
            "label": self.label,
            "version": self.version,
            "role": self.role,
            "in_flight": self.in_flight,
            "engine": self.model.engine,
        }
