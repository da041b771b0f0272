"""`servepath doctor`: walk the path from this machine to a model API, stage by stage, and
name the first broken link, who broke it, and the fix.

plan (pure: what to probe) → observe (I/O, only through the probes) → diagnose (pure:
observations → stages and one cause from the fixed vocabulary in causes). ``local`` is the
server's side (``--local PORT``).
"""

from __future__ import annotations

from servepath.netdiag.doctor.causes import CAUSES, Cause, Explanation, explain
from servepath.netdiag.doctor.diagnose import diagnose
from servepath.netdiag.doctor.evidence import Observations
from servepath.netdiag.doctor.observe import observe
from servepath.netdiag.doctor.plan import DoctorOptions, DoctorUsageError, Pin, make_plan, parse_pin
from servepath.netdiag.doctor.report import STAGE_NAMES, DoctorReport, Stage, StageStatus

__all__ = [
    "CAUSES",
    "STAGE_NAMES",
    "Cause",
    "DoctorOptions",
    "DoctorReport",
    "DoctorUsageError",
    "Explanation",
    "Observations",
    "Pin",
    "Stage",
    "StageStatus",
    "diagnose",
    "explain",
    "make_plan",
    "observe",
    "parse_pin",
    "run_doctor",
]


def run_doctor(url: str, options: DoctorOptions) -> DoctorReport:
    return diagnose(observe(make_plan(url, options)))
