"""The doctor's result: stages in path order, and the verdict (the first broken link, its
cause, who fixes it, the fix)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from servepath.netdiag.doctor.causes import Cause, Explanation

StageStatus = Literal["ok", "warn", "fail", "skip"]

#: The stages of a remote run, in the order a request meets them.
STAGE_NAMES = (
    "local",
    "dns",
    "address",
    "route",
    "transport",
    "tls",
    "http",
    "app",
    "large request",
    "server view",
    "latency",
)


@dataclass(frozen=True)
class Stage:
    name: str
    status: StageStatus
    summary: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "data": self.data,
        }


@dataclass(frozen=True)
class DoctorReport:
    url: str
    stages: tuple[Stage, ...]
    failed_stage: str | None
    cause: Cause
    explanation: Explanation
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.failed_stage is None

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "stages": [s.to_json() for s in self.stages],
            "failed_stage": self.failed_stage,
            "cause": self.cause,
            "explanation": self.explanation.meaning,
            "owner": self.explanation.owner,
            "fix": list(self.explanation.fix),
            "elapsed_s": round(self.elapsed_s, 3),
        }
