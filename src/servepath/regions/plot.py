"""A heatmap of a latency matrix, written as a PNG (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from servepath.regions.model import LatencyMatrix

__all__ = ["plot_matrix"]


def plot_matrix(matrix: LatencyMatrix, path: Path, *, title: str | None = None) -> Path:
    """Draw ``matrix`` as a labelled heatmap with the RTT in ms in every cell."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never look for a display
    import matplotlib.pyplot as plt

    ids = [r.id for r in matrix.regions]
    values = [list(row) for row in matrix.rtt_ms]
    n = len(ids)
    side = max(4.0, 0.62 * n + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    try:
        image = ax.imshow(values, cmap="viridis_r", vmin=0)
        ax.set_xticks(range(n), labels=ids, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(n), labels=ids)
        peak = max((v for row in values for v in row), default=0.0) or 1.0
        font = 9 if n <= 12 else 7 if n <= 20 else 5
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                # Reversed viridis is dark at the slow end: light text there.
                colour = "white" if value > 0.5 * peak else "black"
                text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=font)
        fig.colorbar(image, ax=ax, label="estimated RTT (ms)", fraction=0.046, pad=0.04)
        model = matrix.model
        ax.set_title(
            title
            or f"Estimated RTT between regions (ms)\nbase {model.base_ms:g} ms + 2 × distance"
            f" × {model.stretch:g} ÷ {model.fibre_km_per_ms:g} km/ms",
            fontsize=10,
        )
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
