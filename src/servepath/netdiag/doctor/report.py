"""The doctor's result: stages in path order, and the verdict (the first broken link, its
cause, who fixes it, the fix)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from servepath.netdiag.doctor.causes import Cause, Explanation, explain

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
    "repeat",
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
class StageWarning:
    """A cause found on a stage that only warns: the path works, and something about it is
    not what its owner thinks (a port the firewall claims to close is open)."""

    stage: str
    cause: Cause
    explanation: Explanation

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "cause": self.cause,
            "explanation": self.explanation.meaning,
            "owner": self.explanation.owner,
            "fix": list(self.explanation.fix),
        }


@dataclass(frozen=True)
class DoctorReport:
    url: str
    stages: tuple[Stage, ...]
    failed_stage: str | None
    cause: Cause
    explanation: Explanation
    elapsed_s: float
    warnings: tuple[StageWarning, ...] = ()

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
            "warnings": [w.to_json() for w in self.warnings],
        }


@dataclass
class Verdict:
    """Stages as they are added, and the first failed one that names a cause: the verdict."""

    stages: list[Stage] = field(default_factory=list)
    failed: tuple[str, Cause, dict[str, Any]] | None = None
    warned: list[tuple[str, Cause, dict[str, Any]]] = field(default_factory=list)

    def add(self, stage: Stage, cause: Cause | None = None, **context: Any) -> None:
        """Add ``stage``; a failed one with a ``cause`` is the verdict unless one came first.

        :param context: the facts the cause's explanation needs.
        """
        self.stages.append(stage)
        if stage.status == "fail" and self.failed is None and cause is not None:
            self.failed = (stage.name, cause, context)

    def add_warning(self, stage: Stage, cause: Cause, **context: Any) -> None:
        """Add a stage that warns of ``cause``: explained beside the verdict, never as it."""
        self.stages.append(stage)
        self.warned.append((stage.name, cause, context))

    @property
    def broken(self) -> str | None:
        """The summary of the first failed stage: why later stages were not tried."""
        for stage in self.stages:
            if stage.status == "fail":
                return f"{stage.name} failed"
        return None

    def report(
        self, url: str, context: dict[str, Any], elapsed_s: float, *, strict: bool = False
    ) -> DoctorReport:
        """The report: the stages, and the verdict explained with ``context`` and its own facts.

        :param strict: raise when the explanation needs a fact the run lacks (the tests).
        """
        name: str | None = None
        cause: Cause = "ok"
        extra: dict[str, Any] = {}
        if self.failed is not None:
            name, cause, extra = self.failed
        explanation = explain(cause, {**context, **extra}, strict=strict)
        warnings = tuple(
            StageWarning(stage, warned, explain(warned, {**context, **facts}, strict=strict))
            for stage, warned, facts in self.warned
        )
        return DoctorReport(url, tuple(self.stages), name, cause, explanation, elapsed_s, warnings)
