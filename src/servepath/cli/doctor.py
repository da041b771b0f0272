"""`servepath doctor URL` and `servepath doctor --local PORT`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, app, base_settings, get_output
from servepath.cli._client_options import ApiKeyOption, CafileOption, ProxyOption, read_input
from servepath.errors import UsageError
from servepath.render.text_doctor import doctor_lines

if TYPE_CHECKING:
    from servepath.netdiag.doctor import DoctorReport
    from servepath.output import Output


@app.command()
def doctor(
    url: Annotated[str | None, typer.Argument(help="e.g. http://203.0.113.5/decisions")] = None,
    local: Annotated[
        int | None, typer.Option("--local", help="Check this machine's side of PORT instead")
    ] = None,
    resolver: Annotated[
        list[str] | None, typer.Option("--resolver", help="Also ask this DNS server (IP[:PORT])")
    ] = None,
    resolve: Annotated[
        list[str] | None,
        typer.Option("--resolve", help="NAME:PORT:ADDRESS: dial ADDRESS for NAME (as curl)"),
    ] = None,
    host_header: Annotated[
        str | None, typer.Option("--host-header", help="Send this name as Host (a site's name)")
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="JSON body for the predict route (or -)")
    ] = None,
    proxy: ProxyOption = None,
    cafile: CafileOption = None,
    api_key: ApiKeyOption = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", "-k", help="Look past an untrusted certificate and go on (as curl -k)"
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per network probe")] = 2.0,
    http_timeout: Annotated[float, typer.Option(help="Seconds per HTTP request")] = 10.0,
    slow_ms: Annotated[float, typer.Option(help="A request slower than this is a problem")] = 1000,
    large_kb: Annotated[
        int, typer.Option(help="Size of the large request that finds MTU black holes; 0: off")
    ] = 48,
    repeat: Annotated[
        int,
        typer.Option(
            help="Send GET / and the prediction this often, over fresh and reused connections, "
            "to see failures that come and go; 0: off"
        ),
    ] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    html_out: Annotated[
        Path | None,
        typer.Option(
            "--html", metavar="FILE", help="Also write the report as one self-contained HTML page"
        ),
    ] = None,
    svg_out: Annotated[
        Path | None,
        typer.Option("--svg", metavar="FILE", help="Also write the path as an SVG picture"),
    ] = None,
) -> None:
    """Walk the path to URL stage by stage and name the broken link, who broke it, the fix."""
    out = get_output()
    if local is not None:
        from servepath.netdiag.doctor.local import proxy_in_front, run_local_doctor

        if url is not None:
            raise UsageError(
                f"give a URL or --local PORT, not both: run `servepath doctor {url}` from the "
                f"caller and `servepath doctor --local {local}` on the server"
            )
        if not 0 < local < 65536:
            raise UsageError(f"--local {local} is not a port")
        settings = base_settings()
        front = proxy_in_front(on_vertex=settings.on_vertex, in_kubernetes=settings.in_kubernetes)
        report = run_local_doctor(local, timeout=timeout, front=front)
    else:
        from servepath.netdiag.dns import parse_nameserver
        from servepath.netdiag.doctor import DoctorOptions, parse_pin, run_doctor

        if url is None:
            raise UsageError("give a URL, or --local PORT")
        body = read_input(data) if data is not None else None
        settings = base_settings()
        options = DoctorOptions(
            proxy_env=settings.proxy,
            proxy=proxy,
            resolvers=tuple(parse_nameserver(r) for r in resolver or ()),
            data=body,
            cafile=str(cafile) if cafile else settings.ssl_cert_file,
            insecure=insecure,
            api_key=api_key or settings.api_key,
            timeout=timeout,
            http_timeout=http_timeout,
            slow_ms=slow_ms,
            pins=tuple(parse_pin(r) for r in resolve or ()),
            host_header=host_header,
            large_bytes=max(0, large_kb) * 1000,
            repeat=max(0, repeat),
        )
        report = run_doctor(url, options)
    if json_out:
        out.json(report)
    else:
        for line in doctor_lines(report):
            out.print(line)
    _write_pictures(out, report, html_out, svg_out)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEM)


def _write_pictures(
    out: Output, report: DoctorReport, html_out: Path | None, svg_out: Path | None
) -> None:
    """--html and --svg: the same report as files; only a file that cannot be written
    changes the exit code (bad usage: the path given)."""
    if html_out is None and svg_out is None:
        return
    from datetime import datetime

    from servepath.errors import ReportNotWritten
    from servepath.render import write_page
    from servepath.render.doctor import doctor_html, standalone_svg

    # The report stands (printed, and under --json the one document on stdout): a file that
    # cannot be written is said on stderr and in the exit code, not as a second document.
    try:
        if html_out is not None:
            stamp = datetime.now().astimezone().isoformat(timespec="seconds")
            write_page(html_out, doctor_html(report, generated=stamp))
        if svg_out is not None:
            write_page(svg_out, standalone_svg(report))
    except ReportNotWritten as exc:
        out.error(str(exc))
        raise typer.Exit(EXIT_USAGE) from exc
