"""The output layer: data printed literally, tables laid out for where they go, and the
words and numbers every command uses."""

from __future__ import annotations

import io
import re

import pytest
from typer.testing import CliRunner

from servepath.cli import app
from servepath.output import Column, Grid, Output, percent, plural, shell_command
from tests.support import free_port

ANSI = re.compile(r"\x1b\[[0-9;]*m")
NO_PROXY = {"HTTP_PROXY": "", "http_proxy": "", "NO_PROXY": "", "no_proxy": ""}


def _grid() -> Grid:
    grid = Grid(["name", Column("ms", "right"), Column("note", fold=True, min_width=10)],
                title="[title] :a:")  # fmt: skip
    grid.add_row(("2001:db8:a:b::1", "green"), "1.5", "[bold]not bold[/]")
    grid.add_row("[fd00::1]:80", "12.25", "two\nlines")
    return grid


def test_strings_are_printed_as_they_are() -> None:
    buffer = io.StringIO()
    out = Output(stdout=buffer)
    out.print("http://[fd00::1]:8080/ ", ("2001:db8:a:b::1", "red"), " [bold]x[/] :cd:")
    assert buffer.getvalue() == "http://[fd00::1]:8080/ 2001:db8:a:b::1 [bold]x[/] :cd:\n"


def test_a_pipe_gets_plain_aligned_columns_that_keep_every_cell_whole() -> None:
    buffer = io.StringIO()
    Output(stdout=buffer, width=20).table(_grid())  # narrower than the rows: still whole
    assert buffer.getvalue() == (
        "[title] :a:\n"
        "name                ms  note\n"
        "2001:db8:a:b::1    1.5  [bold]not bold[/]\n"
        "[fd00::1]:80     12.25  two\n"
        "                        lines\n"
    )


def test_a_terminal_gets_a_boxed_table_when_it_fits_and_plain_columns_when_not() -> None:
    wide, narrow = io.StringIO(), io.StringIO()
    Output(stdout=wide, width=80, terminal=True).table(_grid())
    Output(stdout=narrow, width=30, terminal=True).table(_grid())
    boxed = ANSI.sub("", wide.getvalue())
    assert "┏" in boxed and "[fd00::1]:80" in boxed and "[bold]not bold[/]" in boxed
    plain = ANSI.sub("", narrow.getvalue())
    assert "┏" not in plain and "[bold]not bold[/]" in plain
    assert "2001:db8:a:b::1    1.5" in plain


def test_format_forces_a_layout_and_the_root_option_sets_it() -> None:
    boxed, plain = io.StringIO(), io.StringIO()
    Output(stdout=boxed, format="table").table(_grid())
    Output(stdout=plain, format="plain", terminal=True, width=200).table(_grid())
    assert "┏" in boxed.getvalue()
    assert "┏" not in ANSI.sub("", plain.getvalue())
    closed = f"http://127.0.0.1:{free_port()}/"
    result = CliRunner().invoke(app, ["--format", "table", "http", closed], env=NO_PROXY)
    assert "━" in result.output  # the phases, boxed even into a pipe
    result = CliRunner().invoke(app, ["http", closed], env=NO_PROXY)
    assert "━" not in result.output and "TCP connect" in result.output
    result = CliRunner().invoke(app, ["--format", "sideways", "ports", "127.0.0.1", "1"])
    assert result.exit_code == 2


def test_errors_go_to_stderr_literally() -> None:
    out, err = io.StringIO(), io.StringIO()
    Output(stdout=out, stderr=err).error("no [red]route[/] to [fd00::1]")
    assert out.getvalue() == "" and err.getvalue() == "error: no [red]route[/] to [fd00::1]\n"


@pytest.mark.parametrize(
    ("count", "word", "many", "text"),
    [
        (1, "port", None, "1 port"),
        (0, "port", None, "0 ports"),
        (29117, "prediction", None, "29,117 predictions"),
        (1, "process", "processes", "1 process"),
        (2, "process", "processes", "2 processes"),
        (1.0, "day", None, "1 day"),
        (2.5, "day", None, "2.5 days"),
    ],
)
def test_plurals(count: float, word: str, many: str | None, text: str) -> None:
    assert plural(count, word, many) == text


@pytest.mark.parametrize(
    ("share", "text"),
    [
        (11 / 29117, "0.04%"),  # not 0.0%
        (0.25, "25.0%"),
        (0.0, "0.0%"),
        (1.0, "100.0%"),
        (29106 / 29117, "99.96%"),  # not 100.0%
        (1e-9, "0.0000001%"),
        (None, "-"),
    ],
)
def test_percentages_never_round_some_to_none_or_all(share: float | None, text: str) -> None:
    assert percent(share) == text


def test_suggested_commands_can_be_pasted_into_a_shell() -> None:
    assert shell_command("servepath", "doctor", "http://10.0.0.5/") == (
        "servepath doctor http://10.0.0.5/"
    )
    assert shell_command("servepath", "doctor", "http://[::1]:8080/x?a=1&b=2") == (
        "servepath doctor 'http://[::1]:8080/x?a=1&b=2'"
    )
