"""`servepath model`: the example model, and inspecting an artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servepath.cli._app import EXIT_PROBLEM, EXIT_USAGE, app, get_output
from servepath.errors import ModelLoadError

model_app = typer.Typer(
    help="Train the example model, or inspect a model artifact.", no_args_is_help=True
)
app.add_typer(model_app, name="model")


@model_app.command("train-example")
def train_example(
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the .joblib file")],
    rows: Annotated[int, typer.Option(help="Training rows to generate")] = 20_000,
    seed: Annotated[int, typer.Option(help="Generator seed")] = 20261128,
) -> None:
    """Train the example credit-decision model and write it as a joblib file."""
    from servepath.model.example import write_example

    out = get_output()
    if rows < 100:
        out.error("--rows must be at least 100")
        raise typer.Exit(EXIT_USAGE)
    accuracy = write_example(out_path, rows=rows, seed=seed)
    out.print(f"wrote {out_path} (held-out accuracy {accuracy:.3f})")


@model_app.command("info")
def info(
    path: Annotated[Path, typer.Argument(help="Model artifact (.joblib or .onnx)")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Show a model's name, version, input schema and example instance."""
    from servepath.model.loaded import load_model

    out = get_output()
    try:
        model = load_model(path)
    except ModelLoadError as exc:
        out.error(str(exc))
        raise typer.Exit(EXIT_PROBLEM) from exc
    data = {
        **model.describe(),
        "outputs": list(model.outputs),
        "inputs": model.schema.to_json(),
        "example": model.schema.example(),
    }
    if json_out:
        out.json(data)
        return
    out.print(
        f"{model.name}  version {model.version}  ({model.format})  outputs: "
        f"{', '.join(model.outputs)}"
    )
    for f in model.schema.features:
        allowed = f" one of {', '.join(f.categories)}" if f.categories else ""
        out.print(f"  {f.name:<24} {f.kind:<9} example {f.example!r}{allowed}")
