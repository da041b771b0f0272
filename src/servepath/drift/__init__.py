"""Drift of the prediction log against a reference: pure statistics (:mod:`.stats`), one
feature compared (:mod:`.compare`), the values of a side (:mod:`.columns`), the reference
file (:mod:`.reference`), and the command's typed entry point (:mod:`.run`)."""

from __future__ import annotations

from servepath.drift.compare import DEFAULT_FAIL_SHARE, FeatureDrift
from servepath.drift.run import DriftReport, DriftRequest, VersionDrift, run

__all__ = [
    "DEFAULT_FAIL_SHARE",
    "DriftReport",
    "DriftRequest",
    "FeatureDrift",
    "VersionDrift",
    "run",
]
