"""A reference profile as text (`servepath model profile`): one row per feature."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servepath.output import Column, Grid

if TYPE_CHECKING:
    from servepath.model.profile import Profile


def render_profile(profile: Profile, out_path: str) -> Grid:
    """Each feature's bins: a number's range and cut count, a category's values."""
    from servepath.model.profile import NumericProfile

    title = (
        f"wrote {out_path}: {profile.rows} rows of {profile.source or 'training data'}, model "
        f"{profile.model_name} version {profile.model_version}, drifted past PSI "
        f"{profile.threshold:g}"
    )
    grid = Grid(
        ["feature", "kind", Column("bins", "right"), "reference", Column("missing", "right")],
        title=title,
        box="simple",
    )
    for f in profile.features:
        if isinstance(f, NumericProfile):
            shown = f"{f.min:g} … {f.max:g}"
        else:
            top = sorted(zip(f.categories, f.shares, strict=True), key=lambda c: -c[1])[:3]
            shown = ", ".join(f"{c} {100 * s:.0f}%" for c, s in top)
            if len(f.categories) > 3:
                shown += f" (+{len(f.categories) - 3} more)"
        grid.add_row(f.name, f.kind, str(len(f.shares)), shown, f"{100 * f.missing:.1f}%")
    return grid
