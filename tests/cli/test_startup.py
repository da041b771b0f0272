"""Start-up: `import servepath.cli` and every `--help` load nothing heavy.

Each check runs in a fresh interpreter, so what other tests imported cannot hide an import.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from typing import get_args

import pytest

from servepath.cli import COMMANDS

#: Libraries a path tool or `--help` has no use for: the model stack, the HTTP clients,
#: the terminal renderer, the plotting, the async machinery, TLS and DNS libraries.
HEAVY = (
    "numpy",
    "pandas",
    "sklearn",
    "scipy",
    "joblib",
    "onnxruntime",
    "matplotlib",
    "httpx",
    "httpcore",
    "aiohttp",
    "uvloop",
    "uvicorn",
    "rich",
    "psutil",
    "dns",
    "cryptography",
    "hdrh",
    "redis",
    "psycopg",
    "prometheus_client",
    "asyncio",
    "ssl",
    "pydantic",  # typer's own coercion, which servepath's flags do without
)

_PROBE = """
import json, sys
args = json.loads(sys.argv[1])
if args is None:
    import servepath.cli
else:
    import typer.main
    from servepath.cli import app
    try:
        typer.main.get_command(app).main(args, prog_name="servepath", standalone_mode=False)
    except SystemExit:
        pass
imported = sorted(name for name, module in sys.modules.items() if module is not None)
sys.stderr.write("\\nMODULES " + json.dumps(imported) + "\\n")
"""


def loaded_after(args: list[str] | None) -> set[str]:
    """The top-level packages a fresh interpreter holds after ``args`` (None: the import)."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
    return {name.split(".")[0] for name in json.loads(line.removeprefix("MODULES "))}


def test_importing_the_cli_loads_nothing_heavy() -> None:
    loaded = loaded_after(None)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert "servepath" in loaded


def test_the_root_help_and_version_load_nothing_heavy() -> None:
    for args in (["--help"], ["--version"]):
        loaded = loaded_after(args)
        assert not loaded & set(HEAVY), (args, sorted(loaded & set(HEAVY)))


# serve's banner reads the interfaces (psutil) at import; every other command imports only
# what it needs to parse its flags.
_ALLOWED = {"serve": {"psutil"}}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_commands_help_loads_nothing_heavy(command: str) -> None:
    loaded = loaded_after([command, "--help"])
    unexpected = (loaded & set(HEAVY)) - _ALLOWED.get(command, set())
    assert not unexpected, sorted(unexpected)


def test_a_path_tool_run_into_a_pipe_loads_only_what_it_uses() -> None:
    from tests.support import free_port

    for args in (
        ["ports", "127.0.0.1", str(free_port())],
        ["ports", "127.0.0.1", str(free_port()), "--json"],
        ["trace", "no-such-host.invalid"],
    ):
        loaded = loaded_after(args)
        # the probe's own asyncio, and nothing else of the list: no renderer for a pipe,
        # no HTTP client, no model library, no pydantic
        unexpected = (loaded & set(HEAVY)) - {"asyncio", "ssl"}  # asyncio imports ssl
        assert not unexpected, (args, sorted(unexpected))


def test_flags_are_read_with_typers_rules_and_messages() -> None:
    from typer.testing import CliRunner

    from servepath.cli import app

    runner = CliRunner()
    cases = [
        (["ports", "x", "--timeout", "abc"], "Input should be a valid number"),
        (["ports", "x", "--timeout", "0"], "greater than or equal to 0.001"),
        (["ports", "x", "--concurrency", "1.5"], "Input should be a valid integer"),
        (["trace", "x", "--max-hops", "300"], "less than or equal to 255"),
        (["trace", "x", "--protocol", "sctp"], "'sctp' is not one of 'tcp', 'udp', 'icmp'"),
        (["regions", "list", "--provider", "ibm"], "is not one of 'gcp', 'aws', 'azure'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, args
        assert message in result.output, (args, result.output)
    ok = runner.invoke(app, ["regions", "list", "--provider", "aws", "--json"])
    assert ok.exit_code == 0 and {r["provider"] for r in json.loads(ok.stdout)} == {"aws"}


def test_the_root_help_lists_each_command_with_its_own_summary() -> None:
    import typer.main

    from servepath.cli import app

    group = typer.main.get_command(app)
    for name, entry in COMMANDS.items():
        command = group.get_command(None, name)  # type: ignore[attr-defined]
        assert command is not None, name
        assert command.get_short_help_str(limit=200) == entry.summary, name


def test_the_cli_copies_of_probe_defaults_are_the_probes_own() -> None:
    from servepath.cli import load as cli_load
    from servepath.cli import ports as cli_ports
    from servepath.cli import regions as cli_regions
    from servepath.cli import trace as cli_trace
    from servepath.load import capacity
    from servepath.netdiag import ports, trace
    from servepath.regions import catalogue

    # the package re-exports the functions measure() and place() under the modules' names
    measure = importlib.import_module("servepath.regions.measure")
    place = importlib.import_module("servepath.regions.place")

    assert (cli_ports.DEFAULT_TIMEOUT, cli_ports.DEFAULT_CONCURRENCY) == (
        ports.DEFAULT_TIMEOUT,
        ports.DEFAULT_CONCURRENCY,
    )
    assert (cli_trace.DEFAULT_MAX_HOPS, cli_trace.DEFAULT_QUERIES, cli_trace.DEFAULT_TIMEOUT) == (
        trace.DEFAULT_MAX_HOPS,
        trace.DEFAULT_QUERIES,
        trace.DEFAULT_TIMEOUT,
    )
    assert cli_load.DEFAULT_HEADROOM == capacity.DEFAULT_HEADROOM
    assert get_args(cli_regions.ProviderName) == get_args(catalogue.Provider)
    assert get_args(cli_regions.RankName) == get_args(place.RankBy)
    assert cli_regions.DEFAULT_PORT == measure.DEFAULT_PORT
