"""`servepath doctor URL` and `servepath doctor --local PORT`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, app, base_settings, get_output
from servepath.errors import ServepathError


@app.command()
def doctor(
    url: Annotated[str | None, typer.Argument(help="e.g. http://203.0.113.5/decisions")] = None,
    local: Annotated[
        int | None, typer.Option("--local", help="Check this machine's side of PORT instead")
    ] = None,
    resolver: Annotated[
        list[str] | None, typer.Option("--resolver", help="Also ask this DNS server (IP[:PORT])")
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="JSON body for the predict route (or -)")
    ] = None,
    proxy: Annotated[str | None, typer.Option(help="Forward proxy URL (overrides *_PROXY)")] = None,
    cafile: Annotated[Path | None, typer.Option(help="Trust this CA bundle for TLS")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per network probe")] = 2.0,
    http_timeout: Annotated[float, typer.Option(help="Seconds per HTTP request")] = 10.0,
    slow_ms: Annotated[float, typer.Option(help="A request slower than this is a problem")] = 1000,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Walk the path to URL stage by stage and name the broken link, who broke it, the fix."""
    out = get_output()
    if local is not None:
        from servepath.netdiag.local import run_local_doctor

        if not 0 < local < 65536:
            out.error(f"--local {local} is not a port")
            raise typer.Exit(EXIT_USAGE)
        report = run_local_doctor(local, timeout=timeout)
    else:
        from servepath.netdiag.dns import parse_nameserver
        from servepath.netdiag.doctor import DoctorOptions, DoctorUsageError, run_doctor

        if url is None:
            out.error("give a URL, or --local PORT")
            raise typer.Exit(EXIT_USAGE)
        try:
            body = None
            if data is not None:
                body = sys.stdin.buffer.read() if data == "-" else Path(data).read_bytes()
            options = DoctorOptions(
                proxy_env=base_settings().proxy,
                proxy=proxy,
                resolvers=tuple(parse_nameserver(r) for r in resolver or ()),
                data=body,
                cafile=str(cafile) if cafile else None,
                timeout=timeout,
                http_timeout=http_timeout,
                slow_ms=slow_ms,
            )
            report = run_doctor(url, options)
        except (DoctorUsageError, OSError) as exc:
            out.error(str(exc))
            raise typer.Exit(EXIT_USAGE) from exc
        except ServepathError as exc:
            out.error(str(exc))
            raise typer.Exit(EXIT_USAGE) from exc
    if json_out:
        out.json(report)
    else:
        from servepath.netdiag.report import doctor_lines

        for line in doctor_lines(report):
            out.print(line)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEM)
