"""`servepath serve`: run the model API."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import socket
import tempfile
from typing import Annotated

import typer

from servepath.cli._app import EXIT_USAGE, app, base_settings, get_output
from servepath.config import Settings, model_location, serialized_env
from servepath.errors import ConfigError, ModelLoadError
from servepath.net.endpoints import host_port
from servepath.netdiag.interfaces import answering_addresses, local_addresses, url_for
from servepath.output import Output

_KIND_NOTE = {
    "loopback": "this machine only",
    "private": "internal: reachable inside this network",
    "cgnat": "carrier-grade NAT: inside the provider's network",
    "public": "external: reachable from the internet if the firewall allows",
    "link-local": "this link only",
}


def print_reachable(out: Output, settings: Settings) -> None:
    addresses = answering_addresses(settings.host, local_addresses())
    out.print(f"servepath listening on {host_port(settings.host, settings.port)}; reachable at:")
    for a in addresses:
        note = _KIND_NOTE.get(a.kind, a.kind)
        out.print(f"  {url_for(a, settings.port):<40} {a.interface:<10} {a.kind:<9} {note}")
    if settings.host in ("127.0.0.1", "::1", "localhost"):
        out.print(
            "  note: bound to loopback only; other machines and containers cannot reach it. "
            "Use --host 0.0.0.0 to listen on every interface."
        )
    out.print(
        f"  predict: POST {settings.predict_route}   health: GET {settings.health_route}   "
        "docs: /docs   metrics: /metrics"
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind [default: 0.0.0.0]")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port [default: 8080; env AIP_HTTP_PORT]")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes sharing the port")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model artifact (.joblib scikit-learn, or .onnx): a path, or gs://, s3://, "
            "https:// (env SERVEPATH_MODEL, AIP_STORAGE_URI) [default: example]"
        ),
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="Name the model is served as")] = None,
    cache: Annotated[
        str | None, typer.Option(help="Response cache: memory, off, or redis://HOST:PORT/DB")
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="Prediction log: sqlite, off, or postgresql://...")
    ] = None,
    durable: Annotated[
        bool | None, typer.Option("--durable/--no-durable", help="Answer only after the log commit")
    ] = None,
    grace_period: Annotated[
        float | None, typer.Option(help="Seconds to finish in-flight requests on SIGTERM")
    ] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="Largest request body")] = None,
    max_instances: Annotated[int | None, typer.Option(help="Most instances per request")] = None,
    path_echo: Annotated[
        str | None, typer.Option(help="Path-echo route, or 'off' [default: /_path]")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
) -> None:
    """Serve the model: POST /decisions, GET / health, V2 inference, /metrics, /_path."""
    out = get_output()
    try:
        settings = base_settings().replace(
            host=host,
            port=port,
            workers=workers,
            model_name=model_name,
            cache_url=cache,
            store_url=store,
            durable=durable,
            grace_period=grace_period,
            max_body_bytes=max_body_bytes,
            max_instances=max_instances,
            log_level=log_level,
        )
        if model is not None:
            settings = dataclasses.replace(settings, **model_location(model))
        if path_echo is not None:
            route = None if path_echo.lower() == "off" else path_echo
            settings = dataclasses.replace(settings, path_echo_route=route)
        # Bad backend URLs are usage errors here, not tracebacks in a worker; nothing connects.
        from servepath.cache import open_cache
        from servepath.store import parse_store_url

        open_cache(settings)
        parse_store_url(settings.store_url, settings.data_dir)
    except ConfigError as exc:
        out.error(str(exc))
        raise typer.Exit(EXIT_USAGE) from exc
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if (
        settings.model_uri is None
        and settings.model_path is not None
        and not (settings.model_path.is_file())
    ):
        out.error(f"model file {settings.model_path} does not exist")
        raise typer.Exit(EXIT_USAGE)
    # Bound before the example model is trained or any model loads: a taken port fails now.
    try:
        sock = bind_listener(settings.host, settings.port)
    except OSError as exc:
        out.error(bind_error(settings.host, settings.port, exc))
        raise typer.Exit(1) from exc
    if (
        settings.model_path is None
        and settings.model_uri is None
        and not settings.default_model_path.exists()
    ):
        from servepath.model.example import write_example

        out.print(f"training the example model once into {settings.default_model_path} ...")
        try:
            accuracy = write_example(settings.default_model_path)
        except (OSError, ModelLoadError) as exc:
            out.error(f"cannot write the example model: {exc}")
            raise typer.Exit(1) from exc
        out.print(f"example model ready (held-out accuracy {accuracy:.3f})")
    print_reachable(out, settings)
    run_server(settings, sock)


def bind_listener(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads so that a taken port fails at once.

    ``::`` accepts IPv4 as well (IPV6_V6ONLY off): "every interface" means both families.
    """
    family, _, _, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and address[0] == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def bind_error(host: str, port: int, exc: OSError) -> str:
    """Why ``host:port`` cannot be listened on, with who holds it when that is knowable."""
    where = host_port(host, port)
    if exc.errno == errno.EADDRINUSE:
        from servepath.netdiag.listen import inspect_port

        holders = sorted(
            {
                f"{x.process or 'a process'} (pid {x.pid}) on {host_port(x.address, port)}"
                for x in inspect_port(port, udp=False, nat=False).listeners
                if x.pid
            }
        )
        who = f": held by {'; '.join(holders)}" if holders else ""
        return (
            f"cannot listen on {where}: the port is already in use{who}. Stop that process, "
            "or serve on another port with --port"
        )
    if exc.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: ports below 1024 need root or CAP_NET_BIND_SERVICE; "
            "serve on 8080 and map it (docker run -p 80:8080) or put a reverse proxy in front"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot listen on {where}: {host} is not an address of this machine "
            "(servepath listen and ip addr show which are); use 0.0.0.0 for every interface"
        )
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {where}: {host} does not resolve ({exc.strerror})"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def run_server(settings: Settings, sock: socket.socket) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal to the handler that was in
    # place before it started; a no-op handler here turns a clean drain into exit status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)

    common = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        # The path echo reports the real TCP peer; forwarded headers are reported, not trusted.
        "proxy_headers": False,
        "server_header": False,
        "access_log": False,
        "log_level": settings.log_level.lower(),
        "timeout_graceful_shutdown": settings.grace_period,
    }
    if settings.workers == 1:
        from servepath.service.app import create_app

        server = uvicorn.Server(uvicorn.Config(create_app(settings), **common))  # type: ignore[arg-type]
        server.run(sockets=[sock])
        if not server.started:
            raise typer.Exit(3)  # startup failed; uvicorn has said why
        return
    # Worker processes rebuild the same Settings, and share metrics through files; they
    # accept from the one socket bound here.
    metrics_dir = tempfile.mkdtemp(prefix="servepath-metrics-")
    os.environ.update(serialized_env(settings))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    config = uvicorn.Config(
        "servepath.service.app:app_from_env",
        factory=True,
        workers=settings.workers,
        **common,  # type: ignore[arg-type]
    )
    Multiprocess(config, sockets=[sock]).run()
