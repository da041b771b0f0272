"""`servepath model`: the example model, inspecting an artifact, and its reference profile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from servepath.cli._app import app, base_settings, failure_context, get_output
from servepath.model.schema_file import RULE as SCHEMA_RULE

model_app = typer.Typer(
    help="Train the example model, or inspect a model artifact.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(model_app, name="model")


@model_app.command("train-example")
def train_example(
    out_path: Annotated[
        Path, typer.Option("--out", metavar="FILE", help="Where to write the .joblib file.")
    ],
    rows: Annotated[int, typer.Option(metavar="N", help="Training rows to generate.")] = 20_000,
    seed: Annotated[int, typer.Option(metavar="N", help="Generator seed.")] = 20261128,
) -> None:
    """Train the example credit-decision model and write it as a joblib file."""
    from servepath.model.example import write_example

    out = get_output()
    if rows < 100:
        raise typer.BadParameter("must be at least 100", param_hint="--rows")
    accuracy = write_example(out_path, rows=rows, seed=seed)
    out.print(f"wrote {out_path} (held-out accuracy {accuracy:.3f})")


@model_app.command("info")
def info(
    path: Annotated[
        str,
        typer.Argument(
            metavar="PATH",
            help="Model artifact (.joblib or .onnx): a path, or gs://, s3://, https:// as "
            "serve --model takes it.",
        ),
    ],
    schema: Annotated[
        Path | None,
        typer.Option(
            "--schema",
            metavar="FILE",
            help="JSON list of input features; wins over what the model says "
            f"(default, when it exists: {SCHEMA_RULE}).",
        ),
    ] = None,
    probabilities: Annotated[
        bool, typer.Option("--probabilities", help="Answers carry one probability per class.")
    ] = False,
    sha256: Annotated[
        str | None,
        typer.Option(
            "--sha256",
            metavar="HEX",
            help="Load the file only if it has this SHA-256 (checked before it loads).",
        ),
    ] = None,
    allow_http_model: Annotated[
        bool,
        typer.Option(
            "--allow-http-model",
            help="Fetch an http:// URL (anyone on the path can swap the file), as serve does.",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a model's inputs, outputs, example, and the engine that serves it: which engine
    won, why the others did not, the largest disagreement and the cost of one row and of a
    64-row batch. Loading a joblib/pickle file runs the code it holds: inspect only files you
    trust (ONNX runs none)."""
    from servepath.model.loaded import engines_dir, load_model
    from servepath.model.source import RUNS_CODE, ModelSource, parse_sha256, runs_code

    out = get_output()
    failure_context(path=path)
    settings = base_settings()
    source = ModelSource.parse(path)
    pin = parse_sha256(sha256) if sha256 is not None else None
    if runs_code(path):
        # Said before the load, on stderr: by the time it returns, the code has run.
        out.err_console.print(f"warning: {RUNS_CODE}", markup=False, highlight=False)
    local = source.local_path(
        settings.data_dir,
        gcs_endpoint=settings.gcs_endpoint,
        s3_endpoint=settings.s3_endpoint,
        sha256=pin,
        allow_http=allow_http_model or settings.allow_http_model,
    )
    model = load_model(
        local,
        name=source.name if source.kind == "remote" else None,
        cache_dir=engines_dir(settings.data_dir),
        schema_path=schema,
        probabilities=probabilities,
    )
    data: dict[str, Any] = {
        **model.describe(),
        "task": model.task,
        "classes": list(model.classes),
        "outputs": list(model.outputs),
        "inputs": model.schema.to_json(),
        "schema_source": model.schema_source.to_json(local),
        "example": model.schema.example(),
        "engines": model.report.to_json() if model.report else None,
        "runs_code": runs_code(local),
    }
    if json_out:
        out.json(data)
        return
    out.print(
        f"{model.name}  version {model.version}  ({model.format}, {model.task})  outputs: "
        f"{', '.join(model.outputs)}"
    )
    if model.classes:
        out.print(f"classes: {', '.join(str(c) for c in model.classes)}")
    out.print(f"inputs (schema: {model.schema_source.describe()}):")
    note = model.schema_source.note(local)
    if note is not None:
        out.print(f"  note: {note}")
    for f in model.schema.features:
        if f.kind == "any":
            out.print(f"  {f.name:<24} {'any':<9} not used by the model (optional)")
            continue
        known = ""
        if f.categories:
            word = "one of" if f.closed else "learned"
            known = f" {word} {', '.join(str(c) for c in f.categories)}"
        null = " or null" if f.nullable else ""
        out.print(f"  {f.name:<24} {f.kind + null:<17} example {f.example!r}{known}")
    if model.report is not None:
        out.print("engines:")
        for line in model.report.lines():
            out.print(f"  {line}")


@model_app.command("profile")
def profile(
    data: Annotated[
        Path,
        typer.Argument(
            metavar="TRAIN.csv",
            help="The training data: a CSV with a header, a column per input (others ignored).",
        ),
    ],
    out_path: Annotated[
        Path, typer.Option("--out", metavar="FILE", help="Where to write the profile (JSON).")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="The model the profile is for (as serve --model takes it) [default: the "
            "example model]",
        ),
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option(
            "--schema",
            metavar="FILE",
            help=f"JSON list of input features, as serve --schema (default: {SCHEMA_RULE}).",
        ),
    ] = None,
    bins: Annotated[
        int, typer.Option(metavar="N", help="Bins per numeric feature (its quantiles).")
    ] = 10,
    threshold: Annotated[
        float,
        typer.Option(metavar="PSI", help="Stability index past which a feature has drifted."),
    ] = 0.2,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Profile the training data of a model: per input, fixed bins and the share of rows in
    each, for serve --reference-profile to measure live drift against. Loading a
    joblib/pickle model runs the code it holds: profile only models you trust."""
    from servepath.config import model_location
    from servepath.model.loaded import engines_dir, load_model
    from servepath.model.profile import build_profile, read_csv, write_profile
    from servepath.render.text_profile import render_profile

    out = get_output()
    failure_context(path=str(data))
    if bins < 2:
        raise typer.BadParameter("must be at least 2", param_hint="--bins")
    if not threshold > 0:
        raise typer.BadParameter("must be positive", param_hint="--threshold")
    settings = base_settings()
    if model is not None:
        settings = settings.with_values(**model_location(model))
    source = settings.model_source
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
        schema_path=schema or settings.model_schema,
    )
    frame = read_csv(data, loaded.schema)
    built = build_profile(
        loaded.schema,
        frame,
        model_name=loaded.name,
        model_version=loaded.version,
        bins=bins,
        threshold=threshold,
        source=data.name,
    )
    write_profile(built, out_path)
    if json_out:
        out.json({"out": str(out_path), **built.to_json()})
        return
    out.table(render_profile(built, str(out_path)))
