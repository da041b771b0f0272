"""The root `servepath` command. Each subcommand lives in its own module of this package.

A command's module is imported only when that command runs (or its ``--help`` is asked
for): the table below names each command's module and the one-line summary the root
``--help`` lists, so that `servepath ports 127.0.0.1` never imports numpy, httpx or
aiohttp, and `servepath --help` imports no command at all.

Every outcome of every command is an exit code from one table (0 ok, 1 a problem was
found, 2 bad usage), and with ``--json`` a JSON document on stdout, usage errors included.
Commands handle no errors of their own: :meth:`LazyGroup.main` holds the one mapping from a
:class:`~servepath.errors.ServepathError` to its exit code, failure name and message
(:func:`exit_code_of`, :func:`failure_document`); a command body is the program it runs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from servepath.config import Settings
from servepath.errors import ServepathError, UsageError

# httpx's package imports its own command-line tool when it can, and that tool imports
# click, rich and pygments (40% of httpx's import time); this process never runs it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

if TYPE_CHECKING:
    from servepath.output import Output, TableFormat

__all__ = [
    "COMMANDS",
    "EXIT_OK",
    "EXIT_PROBLEM",
    "EXIT_USAGE",
    "app",
    "base_settings",
    "exit_code_of",
    "failure_context",
    "failure_document",
    "get_output",
]

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2


def exit_code_of(exc: BaseException) -> int:
    """The one table from an error to its exit code.

    A usage error (a flag, a setting, a file the user named) is 2; a problem found (the
    thing probed is unhealthy or unreachable) is 1; any other failure of servepath or of the
    operating system (the work could not be carried out) is 1 too: to a script it is "not
    ok", and it is not the caller's usage to fix.
    """
    return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_PROBLEM


#: What the failure document of this invocation says besides the error (the command's
#: target, and the empty shape of its result), as :func:`failure_context` declared it.
_context: dict[str, Any] = {}


def failure_context(**data: Any) -> None:
    """Declare what a failure document of this command carries besides the error's own
    fields: its target (``host=``, ``url=``) and the empty shape of its result."""
    _context.clear()
    _context.update(data)


def failure_document(exc: BaseException) -> dict[str, Any]:
    """The JSON document a failed command prints under ``--json``."""
    if isinstance(exc, ServepathError):
        failure, hints, details = exc.failure, list(exc.hints), exc.details()
    else:  # the operating system refused something servepath asked of it
        failure, hints, details = "os_error", [], {}
    message = str(exc)
    return {"ok": False, "failure": failure, "message": message, "hints": hints,
            **_context, **details}  # fmt: skip


@dataclass(frozen=True)
class CommandEntry:
    module: str  # servepath.cli.<module>
    summary: str  # the first sentence of the command's help, as the root --help lists it


#: Every command, in the order the root --help lists them.
COMMANDS: dict[str, CommandEntry] = {
    "serve": CommandEntry(
        "serve", "Serve the model: POST /decisions, GET / health, V2 inference, /metrics, /_path."
    ),
    "request": CommandEntry("request", "Send the model's example request and show the answer."),
    "doctor": CommandEntry(
        "doctor",
        "Walk the path to URL stage by stage and name the broken link, who broke it, the fix.",
    ),
    "http": CommandEntry("http", "Time one HTTP request phase by phase, like curl -w."),
    "dns": CommandEntry("dns", "Resolve a name with every resolver at once and compare."),
    "ports": CommandEntry("ports", "Probe TCP ports: open, closed, filtered or unreachable."),
    "trace": CommandEntry("trace", "Show the routers on the way to a host."),
    "tls": CommandEntry("tls", "Check a server's TLS certificate and handshake."),
    "listen": CommandEntry("listen", "List this machine's listening sockets and their processes."),
    "load": CommandEntry("load", "Load a service: honest latency percentiles, errors, capacity."),
    "regions": CommandEntry("regions", "Cloud regions: catalogue, latency, placement, RTT."),
    "log": CommandEntry("log", "Read the prediction log back."),
    "drift": CommandEntry(
        "drift", "Drift of the prediction log against a reference, per feature and version."
    ),
    "model": CommandEntry("model", "Train the example model, or inspect a model artifact."),
}


class LazyGroup(TyperGroup):
    """The root group: imports a command's module when the command is looked up."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        from servepath.cli._params import lighten

        lighten(self)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS) + [n for n in self.commands if n not in COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"servepath.cli.{COMMANDS[cmd_name].module}")
            built = _build(cmd_name)
            if built is not None:
                self.commands[cmd_name] = built
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        from typer._click.utils import make_default_short_help

        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name in COMMANDS:
                summary = COMMANDS[name].summary
            else:  # registered by hand (a test's command): it is loaded already
                summary = self.commands[name].get_short_help_str(limit)
            rows.append((name, make_default_short_help(summary, limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        from typer._click.exceptions import UsageError

        try:
            return self._click_resolve_command(ctx, args)
        except UsageError as exc:
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if matches:
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {matches[0]!r}?"
            raise

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """As click runs a command, but a usage error under ``--json`` is JSON on stdout too."""
        from typer._click.exceptions import ClickException

        argv = list(sys.argv[1:] if args is None else args)
        run = super().main
        _context.clear()
        if not standalone_mode:
            try:
                return run(argv, prog_name, complete_var, False, windows_expand_args, **extra)
            except (ServepathError, OSError) as exc:  # as click returns a typer.Exit's code
                return _report(exc, argv)
        try:
            code = run(argv, prog_name, complete_var, False, windows_expand_args, **extra)
        except (ServepathError, OSError) as exc:
            sys.exit(_report(exc, argv))
        except ClickException as exc:
            if _wants_json(argv):
                from servepath.output import dumps

                failure = {"ok": False, "failure": "usage", "message": exc.format_message()}
                sys.stdout.write(dumps(failure) + "\n")
                sys.stdout.flush()
            exc.show()
            sys.exit(exc.exit_code)
        except (EOFError, KeyboardInterrupt):
            sys.stderr.write("\nAborted!\n")
            sys.exit(EXIT_PROBLEM if not isinstance(sys.exc_info()[1], KeyboardInterrupt) else 130)
        except typer.Abort:
            sys.stderr.write("Aborted!\n")
            sys.exit(EXIT_PROBLEM)
        sys.exit(code if isinstance(code, int) else EXIT_OK)


def _report(exc: ServepathError | OSError, argv: Sequence[str]) -> int:
    """Say how the command failed (stderr, and the JSON document under ``--json``); its exit
    code."""
    out = get_output()
    if _wants_json(argv):
        out.json(failure_document(exc))
    out.error(str(exc), getattr(exc, "hints", ()))
    return exit_code_of(exc)


def _wants_json(argv: Sequence[str]) -> bool:
    words = list(argv)
    if "--" in words:
        words = words[: words.index("--")]
    return "--json" in words


def _build(name: str) -> Any:
    """The click command of ``name``, registered on :data:`app` by its module."""
    from typer.main import get_command_from_info, get_command_name, get_group_from_info

    for info in app.registered_commands:
        callback = info.callback
        if (info.name or get_command_name(getattr(callback, "__name__", ""))) == name:
            return _named_arguments(
                get_command_from_info(
                    info,
                    pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode,
                )
            )
    for group in app.registered_groups:
        if group.name == name:
            return _named_arguments(
                get_group_from_info(
                    group,
                    pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode,
                    suggest_commands=app.suggest_commands,
                )
            )
    return None


def _named_arguments(command: Any) -> Any:
    """Help lists an argument by its name alone (``HOST``, not ``HOST <str>``): its help
    text says what it takes. Values are read without pydantic (:mod:`._params`)."""
    from typer.core import TyperArgument

    from servepath.cli._params import lighten

    lighten(command)
    if not hasattr(command, "commands"):
        _usage_errors_as_clicks(command)
    for param in getattr(command, "params", ()):
        if isinstance(param, TyperArgument):
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
    for sub in getattr(command, "commands", {}).values():
        _named_arguments(sub)
    return command


def _usage_errors_as_clicks(command: Any) -> None:
    """A :class:`~servepath.errors.UsageError` from a command's work is shown as click shows
    a bad flag (the usage line, then the error), since it is one to the user."""
    from typer._click.exceptions import UsageError as ClickUsageError

    invoke = command.invoke

    def invoke_showing_usage(ctx: Any) -> Any:
        try:
            return invoke(ctx)
        except UsageError as exc:
            raise ClickUsageError(str(exc), ctx) from exc

    command.invoke = invoke_showing_usage


app = typer.Typer(
    name="servepath",
    cls=LazyGroup,
    help="Serve a model as a fast HTTP API, and see every hop between its callers and it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)

#: How tables are laid out in this invocation (the root --format option).
_FORMATS: dict[str, TableFormat] = {"auto": "auto", "table": "table", "plain": "plain"}
_format: list[TableFormat] = ["auto"]


def _show_version(value: bool) -> None:
    if value:
        from servepath import __version__

        sys.stdout.write(f"servepath {__version__}\n")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_show_version,
            help="Print the version and exit.",
        ),
    ] = False,
    table_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="auto|table|plain",
            help="Tables: boxed on a terminal they fit (auto), always boxed (table), or plain "
            "aligned columns that are never truncated (plain; auto on a pipe).",
        ),
    ] = "auto",
) -> None:
    """Serve a model as a fast HTTP API, and see every hop between its callers and it."""
    if table_format not in _FORMATS:
        raise typer.BadParameter(
            f"{table_format!r} is not one of auto, table, plain", param_hint="--format"
        )
    _format[0] = _FORMATS[table_format]


def get_output() -> Output:
    """The output streams of this invocation (tests construct their own ``Output``)."""
    from servepath.output import Output

    return Output(format=_format[0])


def base_settings() -> Settings:
    """Settings from the environment; each command applies its flags on top."""
    return Settings.from_env()
