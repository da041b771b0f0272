"""`servepath drift`: the current window of the prediction log against a reference."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from servepath.cli._app import (
    EXIT_OK,
    EXIT_PROBLEM,
    app,
    base_settings,
    failure_context,
    get_output,
)
from servepath.model.schema_file import RULE as SCHEMA_RULE
from servepath.traffic import TrafficFilter

if TYPE_CHECKING:
    from servepath.model.schema import InputSchema

_WHEN = "a duration back from now (30s, 10m, 2h, 1d, 1w) or an ISO time"


@app.command("drift")
def drift(
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            metavar="FILE",
            help="The reference rows: CSV, or Parquet (.parquet; needs servepath[parquet]), "
            "e.g. the training data. Without it, --reference-since/--reference-until name "
            "an earlier window of the log.",
            show_default=False,
        ),
    ] = None,
    reference_since: Annotated[
        str | None,
        typer.Option(
            "--reference-since",
            metavar="WHEN",
            help=f"The reference window's start: {_WHEN}.",
            show_default=False,
        ),
    ] = None,
    reference_until: Annotated[
        str | None,
        typer.Option(
            "--reference-until",
            metavar="WHEN",
            help=f"The reference window's end (excluded): {_WHEN}.",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help=f"The current window's start: {_WHEN} [default: the reference window's end, "
            "else the log's start].",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="WHEN",
            help=f"The current window's end (excluded) [default: now]: {_WHEN}.",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            metavar="URL",
            help="Store URL: sqlite, sqlite:///PATH, postgresql://… "
            "[default: SERVEPATH_STORE_URL, else the SQLite file in the data directory].",
            show_default=False,
        ),
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option(
            "--schema",
            metavar="FILE",
            help="JSON list of the model's input features: which features to compare and "
            "their kinds [default: the reference's columns and their types].",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="PATH",
            help="Take the schema from this model artifact (.joblib or .onnx; its schema "
            f"file when there is one: {SCHEMA_RULE}). Loading a joblib file runs its code.",
            show_default=False,
        ),
    ] = None,
    model_version: Annotated[
        str | None,
        typer.Option(
            "--model-version",
            metavar="VERSION",
            help="Only this model version [default: each version in turn].",
            show_default=False,
        ),
    ] = None,
    traffic: Annotated[
        TrafficFilter,
        typer.Option(
            "--traffic",
            metavar="KIND",
            help="Which traffic to read, on both sides [default: ordinary]: ordinary, "
            "synthetic, all, or one kind: doctor, load, monitor, test, other.",
            show_default=False,
        ),
    ] = "ordinary",
    fail_share: Annotated[
        float,
        typer.Option(
            "--fail-share",
            metavar="SHARE",
            help="Exit 1 when at least this share of a version's features drifted "
            "(Evidently's dataset rule).",
        ),
    ] = 0.5,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            help="Also write the report as a page: distributions side by side.",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Drift of the prediction log against a reference, per feature and version.

    Per model version, each feature is tested as Evidently does by default: up to 1,000
    reference values, Kolmogorov–Smirnov (numeric) or chi-squared (categorical; a z-test for
    two values), drift when p < 0.05; above, Wasserstein over the reference's standard
    deviation (numeric) or Jensen–Shannon distance (categorical), drift at ≥ 0.1. Beside the
    verdict: PSI, missing and out-of-range shares, unseen categories, and the prediction's
    own fields. Exits 1 when a version's share of drifted features reaches --fail-share.
    """
    from servepath.drift import DriftRequest, run
    from servepath.errors import ConfigError
    from servepath.render.text_drift import render_drift
    from servepath.store.reader import parse_since

    out = get_output()
    failure_context(store=store)
    if reference is None and reference_since is None and reference_until is None:
        raise ConfigError(
            "drift needs a reference: --reference FILE, or an earlier window of the log "
            "(--reference-since, --reference-until)"
        )
    if schema is not None and model is not None:
        raise ConfigError("--schema and --model both name the features: give one")
    now = time.time()

    def at(text: str | None) -> float | None:
        return None if text is None else parse_since(text, now)

    ref_until = at(reference_until)
    since_ts = at(since)
    if reference is None:
        # Two windows of one log: the reference must end before the current one begins.
        if ref_until is None:
            raise ConfigError(
                "--reference-until is needed with a window of the log as the reference: "
                "the current window starts where it ends (or at --since)"
            )
        if since_ts is None:
            since_ts = ref_until
        elif since_ts < ref_until:
            raise ConfigError("--since is before --reference-until: the windows overlap")
    request = DriftRequest(
        settings=base_settings().with_values(store_url=store),
        since=since_ts,
        until=at(until),
        reference_file=reference,
        reference_since=at(reference_since) if reference is None else None,
        reference_until=ref_until if reference is None else None,
        schema=_schema(schema, model),
        traffic=traffic,
        fail_share=fail_share,
        model_version=model_version,
    )
    report = run(request)
    if json_out:
        out.json(report)
    else:
        render_drift(out, report)
    if html is not None:
        from datetime import datetime

        from servepath.errors import ReportNotWritten
        from servepath.render import write_page
        from servepath.render.drift import drift_html

        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        try:
            write_page(html, drift_html(report, generated=stamp))
        except ReportNotWritten as exc:
            # The report stands (under --json the one document); the page is said apart.
            out.error(str(exc))
            raise typer.Exit(2) from exc
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEM)


def _schema(path: Path | None, model: str | None) -> InputSchema | None:
    """The schema from ``--schema FILE``, or the one ``--model PATH`` carries."""
    if path is not None:
        import orjson

        from servepath.errors import ConfigError, InputNotRead
        from servepath.model.schema import schema_from_json

        try:
            items = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise InputNotRead(str(path), exc.strerror or str(exc)) from exc
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"--schema {path}: not JSON ({exc})") from exc
        try:
            return schema_from_json(items)
        except ValueError as exc:
            raise ConfigError(f"--schema {path}: {exc}") from exc
    if model is None:
        return None
    from servepath.model.loaded import engines_dir, load_model
    from servepath.model.source import RUNS_CODE, ModelSource, runs_code

    settings = base_settings()
    source = ModelSource.parse(model)
    if runs_code(model):
        get_output().err_console.print(f"warning: {RUNS_CODE}", markup=False, highlight=False)
    local = source.local_path(
        settings.data_dir,
        gcs_endpoint=settings.gcs_endpoint,
        s3_endpoint=settings.s3_endpoint,
        allow_http=settings.allow_http_model,
    )
    loaded = load_model(
        local,
        name=source.name if source.kind == "remote" else None,
        cache_dir=engines_dir(settings.data_dir),
    )
    return loaded.schema
