"""The model-zoo benchmark's report: targets evaluated per model, tables, and the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STACKS = ("servepath", "tutorial", "mlserver", "bentoml")
PEERS = ("tutorial", "mlserver", "bentoml")
LABELS = {
    "servepath": "servepath",
    "tutorial": "tutorial FastAPI",
    "mlserver": "MLServer",
    "bentoml": "BentoML",
}
TOLERANCE = 1e-6
HIT_SHARE = 0.60
CACHED_LOAD_S = 2.0
P50_MS = 2.0


def _rows(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["model"], r["stack"]): r for r in result["rows"]}


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One check per model and target, then the global ones: name, model, verdict, detail."""
    rows = _rows(result)
    checks: list[dict[str, Any]] = []

    def add(name: str, model: str, ok: bool | None, detail: str) -> None:
        verdict = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        checks.append({"target": name, "model": model, "verdict": verdict, "detail": detail})

    for model in result["models"]:
        sp = rows.get((model, "servepath"), {})
        rps = sp.get("rps_c64")
        tut = rows.get((model, "tutorial"), {}).get("rps_c64")
        peers = {p: rows.get((model, p), {}).get("rps_c64") for p in PEERS}
        best = max(((v, p) for p, v in peers.items() if v), default=(None, None))
        if rps and tut == 0:
            add("c=64 ≥ 10× tutorial", model, True, "the tutorial answered none in time")
        elif rps and tut:
            add("c=64 ≥ 10× tutorial", model, rps >= 10 * tut, f"{rps / tut:.1f}×")
        else:
            add("c=64 ≥ 10× tutorial", model, None, "not measured")
        if rps and best[0]:
            add(
                "c=64 ≥ 2× best peer",
                model,
                rps >= 2 * best[0],
                f"{rps / best[0]:.1f}× {LABELS[best[1]]}",
            )
        else:
            add("c=64 ≥ 2× best peer", model, None, "not measured")
        p50 = sp.get("p50_c1")
        add(
            "c=1 p50 ≤ 2 ms",
            model,
            None if p50 is None else p50 <= P50_MS,
            f"{p50:.2f} ms" if p50 is not None else "not measured",
        )
        diff = sp.get("difference")
        add(
            "answers ≤ 1e-6",
            model,
            None if diff is None else diff <= TOLERANCE,
            f"{diff:.1e}" if diff is not None else "not measured",
        )
    ceiling = result.get("ceiling_rps_c64")
    hits = [
        (r["hit_rps_c64"], r["model"])
        for r in result["rows"]
        if r["stack"] == "servepath" and r.get("hit_rps_c64")
    ]
    if ceiling and hits:
        low, model = min(hits)
        add(
            "cache hit c=64 ≥ 60% of the transport ceiling",
            "all",
            low >= HIT_SHARE * ceiling,
            f"lowest {low:,.0f} req/s ({model}) = {low / ceiling:.0%} of {ceiling:,.0f}",
        )
    loads = [(s["cached_load_s"], s["model"]) for s in result["startups"]]
    if loads:
        high, model = max(loads)
        add(
            "a cached conversion loads in < 2 s",
            "all",
            high < CACHED_LOAD_S,
            f"slowest {high:.2f} s ({model})",
        )
    return checks


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def render_markdown(result: dict[str, Any], chart: str | None) -> str:
    rows = _rows(result)
    checks = targets(result)
    plan = result["plan"]
    lines = [
        "# Model-zoo benchmark",
        "",
        f"Run {result['started']} UTC, {result['elapsed_s'] / 60:.1f} minutes "
        f"(installing peers: {result['install_s']:.0f} s); {result['cpu']}; load after the run "
        f"{', '.join(str(x) for x in result['load'])}. Each point: {plan['warmup_s']} s warm-up, "
        f"{plan['duration_s']} s measured, wrk on core {plan['client_core']}, the server on core "
        f"{plan['server_core']}; cache misses (every request a new applicant). "
        "Throughput counts answered (2xx) requests; servepath runs with its defaults but "
        "`--max-queue-wait 30`, so that like the peers it queues rather than sheds. "
        "Produced by `make bench-zoo` (bench/zoo.py).",
        "",
        "## Targets",
        "",
        "| target | model | verdict | measured |",
        "|---|---|---|---|",
    ]
    for c in checks:
        lines.append(f"| {c['target']} | {c['model']} | {c['verdict']} | {c['detail']} |")
    passed = sum(c["verdict"] == "PASS" for c in checks)
    failed = sum(c["verdict"] == "FAIL" for c in checks)
    lines += ["", f"{passed} passed, {failed} failed.", ""]
    if chart:
        lines += [f"![c=64 throughput and c=1 latency per model and stack]({chart})", ""]
    lines += [
        "## Throughput at concurrency 64 (answered req/s, cache misses)",
        "",
        "| model | " + " | ".join(LABELS[s] for s in STACKS) + " | × tutorial | × best peer |",
        "|---|" + "---|" * (len(STACKS) + 2),
    ]
    for model in result["models"]:
        cells = []
        for s in STACKS:
            r = rows.get((model, s), {})
            cells.append(_num(r.get("rps_c64"), ",.0f") if not r.get("unavailable") else "n/a")
        sp = rows.get((model, "servepath"), {}).get("rps_c64")
        tut = rows.get((model, "tutorial"), {}).get("rps_c64")
        best = max((rows.get((model, p), {}).get("rps_c64") or 0 for p in PEERS), default=0)
        lines.append(
            f"| {model} | "
            + " | ".join(cells)
            + f" | {_num(sp / tut if sp and tut else None, '.1f')}"
            + f" | {_num(sp / best if sp and best else None, '.1f')} |"
        )
    lines += [
        "",
        "## Latency of a lone request (c=1 p50 / p99, ms)",
        "",
        "| model | " + " | ".join(LABELS[s] for s in STACKS) + " |",
        "|---|" + "---|" * len(STACKS),
    ]
    for model in result["models"]:
        cells = []
        for s in STACKS:
            r = rows.get((model, s), {})
            if r.get("p50_c1") is None:
                cells.append("n/a")
            else:
                cells.append(f"{r['p50_c1']:.2f} / {r['p99_c1']:.2f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Answers against the model's own library (largest |Δ| over 32 fresh applicants)",
        "",
        "| model | " + " | ".join(LABELS[s] for s in STACKS) + " |",
        "|---|" + "---|" * len(STACKS),
    ]
    for model in result["models"]:
        cells = [_num(rows.get((model, s), {}).get("difference"), ".1e") for s in STACKS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## servepath's engine per model, and its start-up",
        "",
        "First load converts (and caches the conversion by the artifact's hash); the second "
        "reads the cache. Both in-process, with the engine race; *ready* is the server "
        "process from start to its first 200 on the health route.",
        "",
        "| model | engine | first load (s) | cached load (s) | ready (s) | not chosen |",
        "|---|---|---|---|---|---|",
    ]
    for s in result["startups"]:
        rejected = "; ".join(s["rejected"]).replace("|", "/")
        lines.append(
            f"| {s['model']} | {s['summary']} | {s['convert_load_s']:.2f} | "
            f"{s['cached_load_s']:.2f} | {_num(s.get('ready_s'), '.1f')} | {rejected} |"
        )
    unavailable = [
        (r["model"], r["stack"], r["unavailable"]) for r in result["rows"] if r.get("unavailable")
    ]
    if unavailable:
        lines += ["", "## Not measured", ""]
        for model, stack, why in unavailable:
            lines.append(f"- {LABELS[stack]} on {model}: {why}")
    ceiling = result.get("ceiling_rps_c64")
    lines += [
        "",
        "## Models",
        "",
        *[f"- **{m}**: {covers}" for m, covers in result["models"].items()],
        "",
        f"Transport ceiling (uvicorn, constant JSON, no model) at c=64: "
        f"{_num(ceiling, ',.0f')} req/s; servepath's cache hits at c=64 per model: "
        + ", ".join(
            f"{r['model']} {r['hit_rps_c64']:,.0f}"
            for r in result["rows"]
            if r["stack"] == "servepath" and r.get("hit_rps_c64")
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


def render_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(result)
    models = list(result["models"])
    fig, axes = plt.subplots(2, 1, figsize=(max(8, len(models) * 0.9), 8), sharex=True)
    width = 0.8 / len(STACKS)
    colors = {
        "servepath": "#1f77b4",
        "tutorial": "#7f7f7f",
        "mlserver": "#ff7f0e",
        "bentoml": "#2ca02c",
    }
    for i, stack in enumerate(STACKS):
        xs = [m + (i - (len(STACKS) - 1) / 2) * width for m in range(len(models))]
        rps = [rows.get((m, stack), {}).get("rps_c64") or 0 for m in models]
        p50 = [rows.get((m, stack), {}).get("p50_c1") or 0 for m in models]
        axes[0].bar(xs, rps, width, label=LABELS[stack], color=colors[stack])
        axes[1].bar(xs, p50, width, label=LABELS[stack], color=colors[stack])
    axes[0].set_yscale("log")
    axes[0].set_ylabel("req/s at c=64 (cache misses)")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("p50 ms at c=1")
    axes[1].axhline(P50_MS, color="red", linewidth=0.8, linestyle="--")
    axes[1].set_xticks(range(len(models)))
    axes[1].set_xticklabels(models, rotation=30, ha="right")
    axes[0].legend(ncol=4, fontsize=8)
    axes[0].set_title("Model zoo: one core per server (missing bar: stack cannot serve it)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
