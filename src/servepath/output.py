"""The CLI's output layer: the only place that prints. Tables for people, JSON for tools.

Everything a command prints is data (addresses, URLs, paths, headers, a server's error
page), so nothing here is ever read as markup: the consoles have markup and emoji codes
off, and a style is given as a separate value (``("open", "green")``), never written into
the text. ``[fd00::1]`` and ``2001:db8:a:b::1`` print as they are.

Tables are built as a :class:`Grid` and laid out by :meth:`Output.table`: a boxed table on
a terminal wide enough for it, otherwise (a pipe, a file, a narrow terminal) plain aligned
columns that are never truncated or folded. rich is imported only when something is
printed, so that a command's start-up does not pay for it.
"""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

import orjson

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

__all__ = [
    "Cell",
    "Column",
    "Grid",
    "JSONable",
    "Output",
    "TableFormat",
    "dumps",
    "percent",
    "plural",
    "shell_command",
    "to_jsonable",
]

#: ``auto``: a boxed table on a terminal it fits, plain columns elsewhere.
TableFormat = Literal["auto", "table", "plain"]
#: A piece of text, or a piece of text with a rich style name ("green", "bold red").
Cell = str | tuple[str, str]
Justify = Literal["left", "right"]
Box = Literal["heavy", "simple", "none"]


class JSONable(Protocol):
    def to_json(self) -> Any: ...


def to_jsonable(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def dumps(value: Any) -> str:
    return orjson.dumps(
        to_jsonable(value), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str
    ).decode()


# --- words and numbers ------------------------------------------------------------------


def plural(count: int | float, word: str, many: str | None = None) -> str:
    """``1 port``, ``2 ports``, ``0 ports``; ``many`` for irregular plurals (``processes``)."""
    shown = f"{count:,}" if isinstance(count, int) else f"{count:g}"
    return f"{shown} {word if count == 1 else (many or word + 's')}"


def percent(share: float | None, digits: int = 1) -> str:
    """A share as a percentage that never rounds a non-zero share to zero (or a share short
    of all to 100%): 11 of 29,117 is ``0.038%``, not ``0.0%``."""
    if share is None or math.isnan(share):
        return "-"
    value = share * 100
    places = digits
    # more places only where rounding would claim "none" or "all"
    while places < 8 and 0 < value < 100 and float(f"{value:.{places}f}") in (0.0, 100.0):
        places += 1
    return f"{value:.{places}f}%"


def shell_command(*argv: str) -> str:
    """A command line a user can paste into a shell: each word quoted only when it must be
    (``servepath doctor 'http://[::1]:8080/'``: brackets are a glob to zsh)."""
    return " ".join(shlex.quote(word) for word in argv)


# --- tables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    header: str
    justify: Justify = "left"
    #: On a terminal, this column may fold its text onto several lines to fit the width;
    #: never narrower than ``min_width``.
    fold: bool = False
    min_width: int = 16


@dataclass
class Grid:
    """A table of literal text: what a command shows, before it knows where it goes."""

    columns: Sequence[Column | str]
    title: str | None = None
    header: bool = True
    box: Box = "heavy"
    rows: list[tuple[Cell, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.columns = [c if isinstance(c, Column) else Column(c) for c in self.columns]

    @property
    def specs(self) -> list[Column]:
        return [c for c in self.columns if isinstance(c, Column)]

    def add_row(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(cells)} cells in a table of {len(self.columns)}")
        self.rows.append(cells)

    def to_rich(self) -> Table:
        from rich import box
        from rich.table import Table

        boxes = {"heavy": box.HEAVY_HEAD, "simple": box.SIMPLE_HEAD, "none": None}
        table = Table(
            title=_text(self.title) if self.title else None,
            title_justify="left",
            show_header=self.header,
            box=boxes[self.box],
            show_edge=self.box == "heavy",
            pad_edge=self.box == "heavy",
        )
        for spec in self.specs:
            table.add_column(
                _text(spec.header),
                justify=spec.justify,
                no_wrap=not spec.fold,
                overflow="fold" if spec.fold else "ellipsis",
                min_width=spec.min_width if spec.fold else None,
            )
        for row in self.rows:
            table.add_row(*(_text(cell) for cell in row))
        return table

    def plain_lines(self) -> list[list[tuple[str, str]]]:
        """The table as aligned lines of (text, style) pieces: two spaces between columns,
        every cell whole, a multi-line cell continued on the lines below."""
        specs = self.specs
        table: list[list[Cell]] = [[c.header for c in specs]] if self.header else []
        table += [list(r) for r in self.rows]
        expanded: list[list[tuple[str, str]]] = []
        for row in table:
            split = [_lines(cell) for cell in row]
            height = max((len(s) for s in split), default=1)
            for i in range(height):
                expanded.append([s[i] if i < len(s) else ("", "") for s in split])
        widths = [max((len(line[j][0]) for line in expanded), default=0) for j in range(len(specs))]
        lines: list[list[tuple[str, str]]] = []
        if self.title:
            lines.append([(self.title, "")])
        last = len(specs) - 1
        for n, line in enumerate(expanded):
            pieces: list[tuple[str, str]] = []
            for j, (text, style) in enumerate(line):
                gap = " " * (widths[j] - len(text))
                bold = "bold" if self.header and n == 0 and not style else style
                if specs[j].justify == "right":
                    pieces += [(gap, ""), (text, bold)]
                else:
                    pieces += [(text, bold), ("" if j == last else gap, "")]
                if j != last:
                    pieces.append(("  ", ""))
            _strip_trailing(pieces)
            lines.append(pieces)
        return lines


def _lines(cell: Cell) -> list[tuple[str, str]]:
    text, style = (cell, "") if isinstance(cell, str) else cell
    return [(part, style) for part in (text.split("\n") if text else [""])]


def _strip_trailing(pieces: list[tuple[str, str]]) -> None:
    while pieces and not pieces[-1][0].strip():
        pieces.pop()
    if pieces:
        text, style = pieces[-1]
        pieces[-1] = (text.rstrip(), style)


def _text(value: Cell | Text) -> Text:
    from rich.text import Text

    if isinstance(value, Text):
        return value
    if isinstance(value, str):
        return Text(value)
    return Text(value[0], style=value[1])


# --- the streams --------------------------------------------------------------------------


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


@dataclass
class Output:
    """Where a command writes. Tests pass their own streams (and a format and a width)
    instead of patching.

    Text for a pipe or a file is written as it is, without rich (nothing to colour, nothing
    to box, and no import to pay for); rich draws only on a terminal, or a boxed table.
    """

    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    format: TableFormat = "auto"
    width: int | None = None  # columns; None: the terminal's (80 when it is not one)
    terminal: bool | None = None  # None: whether the stream is a terminal decides
    _console: Console | None = field(default=None, init=False, repr=False)
    _err_console: Console | None = field(default=None, init=False, repr=False)

    def _make_console(self, stream: IO[str]) -> Console:
        from rich.console import Console

        return Console(
            file=stream,
            markup=False,
            emoji=False,
            highlight=False,
            soft_wrap=True,
            width=self.width,
            force_terminal=self.terminal,
        )

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = self._make_console(self.stdout)
        return self._console

    @property
    def err_console(self) -> Console:
        if self._err_console is None:
            self._err_console = self._make_console(self.stderr)
        return self._err_console

    @property
    def is_terminal(self) -> bool:
        return self.terminal if self.terminal is not None else _isatty(self.stdout)

    @property
    def stderr_is_terminal(self) -> bool:
        return self.terminal if self.terminal is not None else _isatty(self.stderr)

    def json(self, value: Any) -> None:
        self.stdout.write(dumps(value) + "\n")
        self.stdout.flush()

    def print(self, *parts: Cell | Text) -> None:
        """One line of literal text, built from pieces (a piece may carry a style)."""
        if self.is_terminal:
            self.console.print(_assemble(parts))
        else:
            self.stdout.write(_plain_text(parts) + "\n")

    def render(self, renderable: Any) -> None:
        """A rich renderable built by the caller (a progress view, a doctor line)."""
        self.console.print(renderable)

    def table(self, grid: Grid) -> None:
        if not self._plain(grid):
            self.console.print(grid.to_rich())
        elif self.is_terminal:
            for pieces in grid.plain_lines():
                self.console.print(_assemble(pieces), crop=False, overflow="ignore")
        else:
            self.stdout.write("".join(_plain_text(p) + "\n" for p in grid.plain_lines()))

    def tables_are_plain(self) -> bool | None:
        """Whether tables come out as plain columns: True, False, or None when it depends on
        whether the table fits the terminal."""
        if self.format != "auto":
            return self.format == "plain"
        return None if self.is_terminal else True

    def _plain(self, grid: Grid) -> bool:
        if self.format != "auto":
            return self.format == "plain"
        if not self.is_terminal:
            return True
        from rich.measure import Measurement

        console = self.console
        # measured without the console's width as a cap: what the table needs at least
        unbounded = console.options.update_width(1 << 16)
        return Measurement.get(console, unbounded, grid.to_rich()).minimum > console.width

    def error(self, message: str, hints: Sequence[str] = ()) -> None:
        """``error: message`` on stderr, and each hint indented below it."""
        self._to_stderr([("error:", "bold red"), " ", message])
        for hint in hints:
            self._to_stderr([f"  {hint}"])

    def warn(self, message: str) -> None:
        self._to_stderr([("warning:", "yellow"), " ", message])

    def _to_stderr(self, parts: Sequence[Cell]) -> None:
        if self.stderr_is_terminal:
            self.err_console.print(_assemble(parts))
        else:
            self.stderr.write(_plain_text(parts) + "\n")
            self.stderr.flush()


def _plain_text(parts: Sequence[Cell | Text]) -> str:
    return "".join(
        part if isinstance(part, str) else part[0] if isinstance(part, tuple) else part.plain
        for part in parts
    )


def _assemble(parts: Sequence[Cell | Text]) -> Text:
    from rich.text import Text

    line = Text()
    for part in parts:
        line.append_text(_text(part))
    return line
