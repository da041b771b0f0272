"""Reports as pictures and as text: self-contained HTML pages and SVG drawings of what the
doctor and the load generator found, and the tables and lines each command prints
(``text_<command>``).

The pictures are pure: a report goes in, a string comes out (inline CSS, inline SVG, no
script, no external asset). Writing the string to a file is the CLI's one line of I/O
(:func:`write_page`). The text modules write a report to the ``Output`` they are given.
"""

from __future__ import annotations

from pathlib import Path

from servepath.errors import ReportNotWritten

__all__ = ["write_page"]


def write_page(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path``; an unwritable path raises :class:`ReportNotWritten`."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportNotWritten(path, exc.strerror or str(exc)) from exc
    return path
