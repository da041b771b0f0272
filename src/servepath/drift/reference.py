"""The reference of a drift read from a file of rows (the model's training data): CSV or
Parquet, only the columns asked for.

pandas (already a dependency, for the models) reads both: its CSV parser types each column
in C, where the standard library's would give strings to convert in Python; Parquet needs
pyarrow (``servepath[parquet]``), which is only imported for a ``.parquet`` file. A column's
kind is read off its type as Evidently reads it: booleans and text are categories, floats
are numeric, integers are numeric unless they take at most 5 distinct values.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from servepath.drift.columns import INTEGER_CATEGORIES, Kind
from servepath.errors import ConfigError, InputNotRead

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ReferenceColumn", "ReferenceFile", "read_reference"]

PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class ReferenceColumn:
    """One column: its kind by type, and its values (floats with NaN for missing when
    numeric; Python values with None for missing otherwise)."""

    kind: Kind
    values: Any  # NDArray[np.float64] | list[Any]


@dataclass(frozen=True)
class ReferenceFile:
    path: Path
    rows: int
    columns: dict[str, ReferenceColumn]
    #: Every column of the file, in its order (read or not).
    names: tuple[str, ...]


def read_reference(path: Path, wanted: Collection[str] | None = None) -> ReferenceFile:
    """Read the columns of ``path`` named in ``wanted`` (every column when None)."""
    if not path.is_file():
        raise InputNotRead(str(path), "no such file")
    frame, names = (
        _parquet(path, wanted) if path.suffix.lower() in PARQUET_SUFFIXES else _csv(path, wanted)
    )
    columns = {str(name): _column(frame[name]) for name in frame.columns}
    return ReferenceFile(path, len(frame), columns, names)


def _csv(path: Path, wanted: Collection[str] | None) -> tuple[pd.DataFrame, tuple[str, ...]]:
    import pandas as pd

    try:
        names = tuple(str(c) for c in pd.read_csv(path, nrows=0).columns)
        use = [n for n in names if wanted is None or n in wanted]
        return pd.read_csv(path, usecols=use), names
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputNotRead(str(path), str(exc).splitlines()[0] if str(exc) else "") from exc


def _parquet(path: Path, wanted: Collection[str] | None) -> tuple[pd.DataFrame, tuple[str, ...]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"reading {path.name} needs pyarrow: pip install 'servepath[parquet]' "
            "(or give the reference as CSV)"
        ) from None
    try:
        names = tuple(pq.read_schema(path).names)
        use = [n for n in names if wanted is None or n in wanted]
        return pq.read_table(path, columns=use).to_pandas(), names
    except (OSError, ValueError) as exc:
        raise InputNotRead(str(path), str(exc).splitlines()[0] if str(exc) else "") from exc


def _column(series: pd.Series) -> ReferenceColumn:
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return ReferenceColumn("categorical", _objects(series))
    if pd.api.types.is_integer_dtype(dtype):
        kind: Kind = "categorical" if series.nunique() <= INTEGER_CATEGORIES else "numeric"
        if kind == "categorical":
            return ReferenceColumn(kind, _objects(series))
        return ReferenceColumn(kind, series.to_numpy(dtype=np.float64, na_value=np.nan))
    if pd.api.types.is_numeric_dtype(dtype):
        return ReferenceColumn("numeric", series.to_numpy(dtype=np.float64, na_value=np.nan))
    return ReferenceColumn("categorical", _objects(series))


def _objects(series: pd.Series) -> list[Any]:
    """Python values, None where pandas holds a missing value."""
    values = series.astype(object)
    return values.where(series.notna(), None).tolist()  # type: ignore[no-any-return]
