"""Escaping and element building shared by the HTML pages and the SVG drawings.

Every string that reaches a page goes through :func:`esc`: addresses, URLs, header values and
a server's own error page are data, never markup. The output is valid HTML and valid XML
(a standalone SVG is parsed as XML), so characters XML forbids are replaced too.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Iterable

# C0 controls other than tab, newline and carriage return, DEL, and the C1 block: XML 1.0
# forbids the first, and none of them means anything on a page.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


def esc(value: object) -> str:
    """``value`` as text that is safe in an HTML or XML element or a quoted attribute."""
    text = str(value)
    # a lone surrogate cannot be written as UTF-8: shown as U+FFFD, as a browser would
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    text = _FORBIDDEN.sub("\ufffd", text)
    return html.escape(text, quote=True)


def attrs(values: dict[str, object | None]) -> str:
    """`` name="value"`` pairs (``class_`` → ``class``, ``_`` → ``-``); None is left out."""
    parts = []
    for name, value in values.items():
        if value is None:
            continue
        key = name.rstrip("_").replace("_", "-")
        parts.append(f' {key}="{esc(value)}"')
    return "".join(parts)


def el(name: str, *children: str, **values: object | None) -> str:
    """One element; ``children`` are already markup (escape text with :func:`esc`)."""
    return f"<{name}{attrs(values)}>{''.join(children)}</{name}>"


def empty(name: str, **values: object | None) -> str:
    """An element without content, written ``<name …/>`` (valid in SVG and XML)."""
    return f"<{name}{attrs(values)}/>"


def text_el(name: str, text: object, **values: object | None) -> str:
    """An element holding escaped ``text``."""
    return el(name, esc(text), **values)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when it was longer."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def wrap(text: str, width: int, lines: int | None = None) -> list[str]:
    """``text`` in lines of at most ``width`` characters (long words broken); at most
    ``lines`` of them, the last ending in an ellipsis when text was left out."""
    out = textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False) or [""]
    if lines is not None and len(out) > lines:
        out = out[:lines]
        out[-1] = clip(out[-1], width - 1) + "…" if len(out[-1]) >= width else out[-1] + "…"
    return out


def ms(value: float | None) -> str:
    """A duration for a label: ``0.30 ms``, ``12.3 ms``, ``850 ms``, ``1.25 s``; ``–`` for none."""
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value / 1000:.3g} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def table(
    header: Iterable[str],
    rows: Iterable[Iterable[object]],
    *,
    caption: str | None = None,
    numeric: Iterable[int] = (),
    row_class: Iterable[str | None] | None = None,
    column_class: dict[int, str] | None = None,
) -> str:
    """An HTML table of escaped text; columns at the indexes in ``numeric`` align right,
    ``column_class`` gives a column's cells a class (``wide-cell``: hidden on a phone)."""
    right = set(numeric)
    extra = column_class or {}

    def cls(i: int) -> str | None:
        names = " ".join(n for n in ("num" if i in right else "", extra.get(i, "")) if n)
        return names or None

    head = "".join(el("th", esc(h), scope="col", class_=cls(i)) for i, h in enumerate(header))
    classes = list(row_class) if row_class is not None else None
    body = []
    for n, row in enumerate(rows):
        cells = "".join(el("td", esc(v), class_=cls(i)) for i, v in enumerate(row))
        body.append(el("tr", cells, class_=classes[n] if classes else None))
    cap = el("caption", esc(caption)) if caption else ""
    grid = el("table", cap, el("thead", el("tr", head)), el("tbody", *body))
    return el("div", grid, class_="table")  # scrolls sideways on a narrow screen
