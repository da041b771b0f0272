"""`servepath drift` as text: per model version, the verdict and one line per feature, the
drifted features first, then the prediction's own fields and the notes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servepath.drift import DriftReport, FeatureDrift, VersionDrift
    from servepath.output import Grid, Output

#: How each test's statistic is named in a table.
TEST_LABELS = {
    "ks": "K-S p",
    "chisquare": "chi² p",
    "z": "z-test p",
    "wasserstein": "Wasserstein/σ",
    "jensenshannon": "Jensen–Shannon",
}


def number(value: float | None) -> str:
    """A statistic for a cell: 3 significant digits, tiny p-values in exponent form."""
    if value is None:
        return "-"
    if value != 0 and abs(value) < 0.001:
        return f"{value:.1e}"
    return f"{value:.3g}"


def share(value: float | None) -> str:
    from servepath.output import percent

    return "-" if value is None else percent(value)


def ordered(features: Sequence[FeatureDrift]) -> list[FeatureDrift]:
    """Drifted features first, each group in its own order (the schema's or the file's)."""
    return sorted(features, key=lambda f: not f.drifted)


def moved(f: FeatureDrift) -> str:
    """What else moved: values out of the reference's range, or categories it never had."""
    if f.out_of_range:
        return f"{share(f.out_of_range)} out of range"
    if f.unseen:
        names = ", ".join(v for v, _ in f.unseen[:3]) + (", …" if len(f.unseen) > 3 else "")
        return f"{share(f.unseen_share)} unseen ({names})"
    return f.note or ""


def window(since: float | None, until: float | None) -> str:
    def at(ts: float | None, open_end: str) -> str:
        if ts is None:
            return open_end
        return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")

    return f"{at(since, 'the start')} … {at(until, 'now')}"


def version_name(v: VersionDrift) -> str:
    """A version as people name it: its label first when it has one (a repository folder)."""
    if v.model_label and v.model_label != v.model_version:
        return f"{v.model_name} {v.model_label} ({v.model_version})"
    return f"{v.model_name} {v.model_version}"


def _grid(features: Sequence[FeatureDrift], title: str) -> Grid:
    from servepath.output import Column, Grid

    grid = Grid(
        [
            "",
            "feature",
            "kind",
            "test",
            Column("statistic", "right"),
            Column("threshold", "right"),
            Column("PSI", "right"),
            Column("missing", "right"),
            "moved",
        ],
        title=title,
        box="simple",
    )
    for f in ordered(features):
        missing = f"{share(f.reference_missing)} → {share(f.current_missing)}"
        grid.add_row(
            ("DRIFT", "bold red") if f.drifted else "ok",
            f.name,
            f.kind,
            TEST_LABELS.get(f.test or "", "-"),
            number(f.statistic),
            number(f.threshold),
            number(f.psi),
            missing,
            moved(f),
        )
    return grid


def render_drift(out: Output, report: DriftReport) -> None:
    from servepath.output import percent, plural

    reference = (
        f"{report.reference} ({plural(report.reference_rows, 'row')})"
        if report.reference_kind == "file"
        else f"the log's window {window(report.reference_since, report.reference_until)} "
        f"({plural(report.reference_rows, 'prediction')})"
    )
    out.print(f"{report.store}: {window(report.since, report.until)} against {reference}")
    for v in report.versions:
        count = sum(f.drifted for f in v.features)
        verdict = ("DATASET DRIFT", "bold red") if v.drifted else ("no dataset drift", "bold green")
        out.print(
            f"{version_name(v)}: {plural(v.rows, 'prediction')}, "
            f"{count} of {plural(len(v.features), 'feature')} drifted "
            f"({percent(v.drifted_share)}; fails at {percent(report.fail_share)}) — ",
            verdict,
        )
        if v.features:
            out.table(_grid(v.features, "features"))
        if v.prediction:
            out.table(_grid(v.prediction, "prediction"))
    for note in report.notes:
        out.print(f"note: {note}")
