"""The root `servepath` command. Each subcommand lives in its own module of this package."""

from __future__ import annotations

import os

import typer

from servepath.config import Settings
from servepath.output import Output

app = typer.Typer(
    name="servepath",
    help="Serve a model as a fast HTTP API, and see every hop between its callers and it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2


def get_output() -> Output:
    """The output streams of this invocation (tests construct their own ``Output``)."""
    return Output()


def base_settings() -> Settings:
    """Settings from the environment; each command applies its flags on top."""
    return Settings.from_env(os.environ)
