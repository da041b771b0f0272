"""Help as a reader meets it: paragraphs wrapped, defaults and environment variables shown,
flags without type tags, a version, and no traceback for a value a flag cannot take."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from servepath import __version__
from servepath.cli import COMMANDS, app

runner = CliRunner()
WIDTH = 100  # the help's content width (max_content_width)


def help_of(*args: str, columns: int = 200) -> str:
    """The help as a terminal ``columns`` wide shows it (a process of its own: the test
    runner would fix the width at 80)."""
    env = {**os.environ, "COLUMNS": str(columns)}
    proc = subprocess.run([sys.executable, "-m", "servepath", *args, "--help"],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _description(text: str) -> list[list[str]]:
    """The paragraphs between the usage line and the first section of a help text."""
    body = text.split("\n\n", 1)[1]
    body = re.split(r"\n(?:Arguments|Options|Commands):\n", body)[0]
    return [[line.strip() for line in p.splitlines()] for p in body.strip().split("\n\n")]


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_paragraphs_are_wrapped_to_the_width_not_broken_mid_sentence(
    command: list[str],
) -> None:
    text = help_of(*command)
    for paragraph in _description(text):
        for line, following in itertools.pairwise(paragraph):
            # a line ends early only when the next word would not have fitted on it (the
            # text is indented by 2 within the formatter's width, itself 2 below WIDTH)
            assert len(line) + 1 + len(following.split()[0]) > WIDTH - 4, (line, following)
    assert all(len(line) <= WIDTH for line in text.splitlines())


# serve and doctor are the serving and doctor engineers' modules: they keep typer's tags.
@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ("serve", "doctor")])
def test_flags_and_arguments_show_no_type_tags(command: str) -> None:
    text = help_of(command)
    assert not re.search(r"<(bool|str|int|float|path)[^>]*>", text), text


def test_defaults_and_environment_variables_are_in_the_help() -> None:
    ports = " ".join(help_of("ports").split())
    assert "[default: 1.0; x>=0.001]" in ports and "[default: 22,80,443" in ports
    trace = " ".join(help_of("trace").split())
    assert "[default: 80]" in trace and "[default: 30; 1<=x<=255]" in trace
    for command in ("request", "http", "load"):
        text = " ".join(help_of(command).split())
        assert "HTTP_PROXY" in text and "NO_PROXY" in text, command
        assert "[default: SSL_CERT_FILE]" in text and "--insecure" in text, command
    load = " ".join(help_of("load").split())
    assert "[default: 1 without --data, 0 with it]" in load and "--repeat" in load
    assert "[default: 10s]" in load


def test_the_program_is_named_servepath_however_it_was_started() -> None:
    assert help_of("ports").startswith("Usage: servepath ports [OPTIONS]")


def test_version_is_printed() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"servepath {__version__}\n"


def test_a_log_level_serve_cannot_take_is_a_usage_error_not_a_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEPATH_", "AIP_"))}
    env["SERVEPATH_DATA_DIR"] = str(tmp_path)
    for argv, extra in (
        (["serve", "--log-level", "verbose", "--port", "1"], {}),
        (["serve", "--port", "1"], {"SERVEPATH_LOG_LEVEL": "loud"}),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "servepath", *argv],
            capture_output=True, text=True, timeout=60, env={**env, **extra},
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "not one of critical, error, warning, info, debug" in proc.stderr


def test_an_unknown_command_suggests_the_nearest() -> None:
    result = runner.invoke(app, ["pots", "127.0.0.1"])
    assert result.exit_code == 2
    assert "Did you mean 'ports'?" in result.output


def test_the_schema_files_name_is_one_rule_said_alike_in_the_readme_the_docs_and_help() -> None:
    from pathlib import Path

    from servepath.model.schema_file import RULE, schema_file_for

    def plain(text: str) -> str:
        return " ".join(text.replace("`", "").split())

    root = Path(__file__).resolve().parents[2]
    for doc in ("README.md", "docs/models.md"):
        assert RULE in plain((root / doc).read_text()), doc
    for command in (["model", "info"], ["serve"]):
        assert RULE in plain(help_of(*command)), command
    # and the rule is what the loader reads
    assert schema_file_for(Path("m/numeric.onnx")) == Path("m/numeric.onnx.schema.json")
