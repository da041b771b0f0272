"""`servepath regions`: the region catalogue, the latency model, placement and measurement."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, get_output
from servepath.render.text_regions import render_measurement

if TYPE_CHECKING:
    from servepath.regions.catalogue import Region

#: The catalogue's providers and the placement's rankings (servepath.regions.catalogue
#: Provider, .place RankBy), written here so that `--help` does not import the regions
#: package; a test holds them equal.
ProviderName = Literal["gcp", "aws", "azure"]
RankName = Literal["mean", "worst"]
#: servepath.regions.measure.DEFAULT_PORT
DEFAULT_PORT = 443

regions_app = typer.Typer(
    help="Cloud regions: catalogue, latency, placement, RTT.\n\nThe catalogue of Google "
    "Cloud, AWS and Azure regions, the latency model's estimates, placement near the "
    "callers, and measured round trips.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(regions_app, name="regions")

ProviderOption = Annotated[
    ProviderName | None,
    typer.Option("--provider", help="Only this provider's regions.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@regions_app.command("list")
def list_regions(provider: ProviderOption = None, json_out: JsonOption = False) -> None:
    """List the regions in the catalogue: id, provider, city, country, coordinates."""
    from servepath.output import Column, Grid, plural
    from servepath.regions.catalogue import regions_of

    out = get_output()
    regions = regions_of(provider)
    if json_out:
        out.json(list(regions))
        return
    grid = Grid(
        ["id", "provider", "city", "country", Column("lat", "right"), Column("lon", "right")],
        title=plural(len(regions), "region"),
        box="simple",
    )
    for r in regions:
        grid.add_row(r.id, r.provider, r.city, r.country, f"{r.latitude:.2f}", f"{r.longitude:.2f}")
    out.table(grid)


@regions_app.command("matrix")
def matrix(
    regions: Annotated[
        str,
        typer.Option("--regions", metavar="ID,ID,...", help="Comma-separated region ids."),
    ],
    json_out: JsonOption = False,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", metavar="FILE", help="Also write a heatmap PNG to this file."),
    ] = None,
) -> None:
    """Estimated RTT (ms) between every pair of the given regions, from the latency model."""
    from servepath.output import Column, Grid
    from servepath.regions.catalogue import resolve_regions
    from servepath.regions.model import DEFAULT_MODEL, latency_matrix

    out = get_output()
    chosen = resolve_regions(_split(regions))
    if not chosen:
        raise typer.BadParameter("--regions needs at least one region id")
    result = latency_matrix(chosen, DEFAULT_MODEL)
    if plot is not None:
        from servepath.regions.plot import plot_matrix

        plot_matrix(result, plot)
    if json_out:
        data = result.to_json()
        if plot is not None:
            data["plot"] = str(plot)
        out.json(data)
        return
    grid = Grid(
        ["from \\ to", *(Column(r.id, "right") for r in chosen)], title="estimated RTT (ms)"
    )
    for r, row in zip(chosen, result.rtt_ms, strict=True):
        grid.add_row(r.id, *(_ms(v) for v in row))
    out.table(grid)
    out.print(_model_line())
    if plot is not None:
        out.print(f"heatmap written to {plot}")


def _model_line() -> str:
    from servepath.regions.model import DEFAULT_MODEL

    m = DEFAULT_MODEL
    return (
        f"model: RTT ≈ {m.base_ms:g} ms + 2 × great-circle km × {m.stretch:g} ÷ "
        f"{m.fibre_km_per_ms:g} km/ms ({m.same_region_ms:g} ms within a region); "
        "an estimate, typically within ±30% of measured medians"
    )


@regions_app.command("place")
def place_command(
    callers: Annotated[
        str,
        typer.Option(
            "--callers",
            metavar="REGION=WEIGHT,...",
            help="Where the traffic comes from (weights are shares).",
        ),
    ],
    candidates: Annotated[
        str | None,
        typer.Option(
            "--candidates",
            metavar="ID,ID,...",
            help="Comma-separated regions to rank [default: all].",
        ),
    ] = None,
    provider: ProviderOption = None,
    by: Annotated[
        RankName,
        typer.Option(
            "--by", help="Rank by the weighted mean RTT (then worst caller), or the reverse."
        ),
    ] = "mean",
    top: Annotated[
        int, typer.Option("--top", min=1, metavar="N", help="Show this many candidates.")
    ] = 10,
    json_out: JsonOption = False,
) -> None:
    """Rank candidate regions by the callers' weighted mean RTT and their worst caller's RTT."""
    from servepath.output import Column, Grid, plural
    from servepath.regions.catalogue import get_region, regions_of, resolve_regions
    from servepath.regions.model import DEFAULT_MODEL
    from servepath.regions.place import parse_callers, place

    out = get_output()
    weights: dict[Region, float] = {}
    for region_id, weight in parse_callers(callers):
        region = get_region(region_id)
        weights[region] = weights.get(region, 0.0) + weight
    if candidates is not None:
        pool = resolve_regions(_split(candidates))
        if provider is not None:
            pool = [r for r in pool if r.provider == provider]
    else:
        pool = list(regions_of(provider))
    ranked = place(weights, pool, model=DEFAULT_MODEL, by=by)
    shown = ranked[:top]
    if json_out:
        out.json(
            {
                "by": by,
                "callers": {r.id: w for r, w in weights.items()},
                "model": DEFAULT_MODEL.to_json(),
                "ranking": shown,
                "candidates": len(ranked),
            }
        )
        return
    grid = Grid(
        [
            Column("#", "right"),
            "region",
            Column("city", fold=True, min_width=12),
            Column("mean", "right"),
            Column("worst", "right"),
            "worst caller",
        ],
        title=f"best of {plural(len(ranked), 'candidate region')}, ranked by {by} RTT (ms)",
        box="simple",
    )
    for p in shown:
        grid.add_row(
            str(p.rank),
            p.region.id,
            f"{p.region.city}, {p.region.country}",
            _ms(p.mean_rtt_ms),
            _ms(p.worst_rtt_ms),
            p.worst_caller,
        )
    out.table(grid)
    out.print(_model_line())


@regions_app.command("measure")
def measure_command(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="HOST[:PORT][@REGION]...",
            help="@REGION names the region the host runs in, so its RTT can be set beside "
            "the model's estimate.",
            show_default=False,
        ),
    ],
    samples: Annotated[
        int,
        typer.Option(
            "--samples", "-n", min=1, max=10_000, metavar="N", help="Handshakes per target."
        ),
    ] = 10,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=0.001, metavar="SECONDS", help="Seconds to wait for each handshake."
        ),
    ] = 1.0,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", min=0.0, metavar="SECONDS", help="Seconds between one target's samples."
        ),
    ] = 0.1,
    from_region: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="REGION", help="The region this machine is in, for the estimate."
        ),
    ] = None,
    port: Annotated[
        int,
        typer.Option(
            "--port", min=1, max=65535, metavar="PORT", help="Port for targets that give none."
        ),
    ] = DEFAULT_PORT,
    json_out: JsonOption = False,
) -> None:
    """Measure TCP-connect RTT to endpoints (median, p90, min, loss), gcping-style."""
    from servepath.regions.catalogue import get_region
    from servepath.regions.measure import measure, parse_measure_target
    from servepath.regions.model import DEFAULT_MODEL

    out = get_output()
    parsed = [parse_measure_target(t, port) for t in targets]
    origin = get_region(from_region) if from_region else None
    named = {t.region: get_region(t.region) for t in parsed if t.region}
    report = measure(
        parsed,
        samples=samples,
        timeout=timeout,
        interval=interval,
        from_region=origin,
        regions=named,
        model=DEFAULT_MODEL,
    )
    if json_out:
        out.json(report)
    else:
        render_measurement(out, report)
    raise typer.Exit(EXIT_PROBLEM if report.all_failed else EXIT_OK)
