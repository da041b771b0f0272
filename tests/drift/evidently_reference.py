"""Evidently's own per-column drift verdict, as its data drift preset computes it, for the
tests to agree with.

Evidently 0.7's package imports, on ``import evidently``, a module that pandas 3 no longer
supports (``pandas.core.dtypes.common.infer_dtype_from_object``); the statistics themselves
(``evidently.legacy.calculations.stattests``) import fine. So the package is entered below
its ``__init__``: a bare package module stands in for ``evidently``, and the statistics,
the default test choice and the column-type rule are imported from their own modules.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tests.support import need


def _load() -> Any:
    if "evidently" not in sys.modules:
        spec = importlib.util.find_spec("evidently")
        need(
            spec is not None and spec.submodule_search_locations is not None,
            "evidently is not installed (pip install -e '.[dev]')",
        )
        assert spec is not None and spec.submodule_search_locations is not None
        package = types.ModuleType("evidently")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["evidently"] = package
    from evidently.legacy.calculations import data_drift
    from evidently.legacy.calculations.stattests import psi as psi_module
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    return types.SimpleNamespace(
        get_stattest=get_stattest,
        ColumnType=ColumnType,
        psi=psi_module.psi_stat_test,
        get_dataset_drift=data_drift.get_dataset_drift,
    )


@dataclass(frozen=True)
class Verdict:
    test: str
    statistic: float
    threshold: float
    drifted: bool
    psi: float


def column_drift(reference: pd.Series, current: pd.Series, kind: str) -> Verdict:
    """What Evidently's data drift says of one column (``kind``: numeric or categorical):
    infinities and NaN dropped from each side, the default test for the sizes, its default
    threshold."""
    ev = _load()
    column_type = ev.ColumnType.Numerical if kind == "numeric" else ev.ColumnType.Categorical
    ref = reference.replace([-np.inf, np.inf], np.nan).dropna()
    cur = current.replace([-np.inf, np.inf], np.nan).dropna()
    test = ev.get_stattest(ref, cur, column_type, None)
    result = test(ref, cur, column_type, None)
    psi = ev.psi(ref, cur, column_type, None)
    return Verdict(
        test.name,
        float(result.drift_score),
        float(result.actual_threshold),
        bool(result.drifted),
        float(psi.drift_score),
    )


def dataset_drift(drifted: list[bool], share: float = 0.5) -> bool:
    """Evidently's dataset verdict over columns that did or did not drift."""
    ev = _load()
    columns = {str(i): types.SimpleNamespace(drift_detected=d) for i, d in enumerate(drifted)}
    return bool(ev.get_dataset_drift(columns, share).dataset_drift)
