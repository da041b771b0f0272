"""`servepath serve`: run the model API (binding, workers and running live in service.server)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from servepath.cli._app import EXIT_USAGE, app, base_settings, fail, get_output
from servepath.config import Settings, model_location, parse_auto
from servepath.errors import ConfigError, ModelLoadError
from servepath.net.endpoints import host_port
from servepath.net.interfaces import answering_addresses, local_addresses, url_for
from servepath.output import Output

_KIND_NOTE = {
    "loopback": "this machine only",
    "private": "internal: reachable inside this network",
    "cgnat": "carrier-grade NAT: inside the provider's network",
    "public": "external: reachable from the internet if the firewall allows",
    "link-local": "this link only",
}


def start_report(settings: Settings) -> dict[str, Any]:
    """What the start banner says, as data: where it listens, its routes and its limits."""
    from servepath.service.protocol import HttpLimits

    addresses = answering_addresses(settings.host, local_addresses())
    return {
        "listening": host_port(settings.host, settings.port),
        "reachable": [
            {
                "url": url_for(a, settings.port, "https" if settings.tls_cert else "http"),
                "interface": a.interface,
                "kind": a.kind,
                "note": _KIND_NOTE.get(a.kind, a.kind),
            }
            for a in addresses
        ],
        "loopback_only": settings.host in ("127.0.0.1", "::1", "localhost"),
        "routes": {
            "predict": settings.predict_route,
            "health": settings.health_route,
            "live": "/v2/health/live",
            "docs": "/docs",
            "metrics": "/metrics",
        },
        "workers": settings.workers,
        "limits": {
            **HttpLimits.from_settings(settings).to_json(),
            "max_in_flight": settings.max_in_flight,
            "max_queue_wait_s": settings.max_queue_wait,
            "keepalive_timeout_s": settings.keepalive_timeout,
            "max_body_bytes": settings.max_body_bytes,
            "max_instances": settings.max_instances,
            "grace_period_s": settings.grace_period,
        },
    }


def print_reachable(out: Output, settings: Settings) -> None:
    report = start_report(settings)
    out.print(f"servepath listening on {report['listening']}; reachable at:")
    for a in report["reachable"]:
        out.print(f"  {a['url']:<40} {a['interface']:<10} {a['kind']:<9} {a['note']}")
    if report["loopback_only"]:
        out.print(
            "  note: bound to loopback only; other machines and containers cannot reach it. "
            "Use --host 0.0.0.0 to listen on every interface."
        )
    out.print(
        f"  predict: POST {settings.predict_route}   health: GET {settings.health_route}   "
        "live: GET /v2/health/live   docs: /docs   metrics: /metrics"
    )
    limits = report["limits"]
    wait = limits["max_queue_wait_s"]
    out.print(
        f"  limits: {limits['max_in_flight']} requests in flight, queue wait "
        f"{'auto' if wait is None else f'{wait:g} s'}, {limits['max_connections']} connections, "
        f"request timeout {limits['request_timeout_s']:g} s, header timeout "
        f"{limits['header_timeout_s']:g} s"
    )


def print_tls(out: Output, settings: Settings, certificate: Any) -> None:
    from servepath.service.tls import certificate_age_note

    redirect = settings.http_redirect_port
    out.print(
        f"  tls: {certificate.describe()}; SIGHUP reloads it"
        + (f"; plain HTTP on port {redirect} redirects here" if redirect else "")
    )
    note = certificate_age_note(certificate)
    if note:
        out.print(f"  warning: {note}")


def _auto(text: str | None, name: str, kind: type[float] | type[int]) -> Any:
    if text is None:
        return None
    return parse_auto(text, name, kind)


def _ui_route(text: str) -> str | None:
    """``--ui``: a path for the live page, or ``off``."""
    if text.lower() == "off":
        return None
    route = text.rstrip("/")
    if not route.startswith("/"):
        raise ConfigError(f"--ui: {text!r} is not a path (it must start with /) nor 'off'")
    return route


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
    model_name: Annotated[
        str | None, typer.Option(help="Name the model is served as (env SERVEPATH_MODEL_NAME)")
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option(
            help="JSON schema of the inputs, winning over what the model says (env "
            "SERVEPATH_MODEL_SCHEMA) [default: MODEL.schema.json when it exists]"
        ),
    ] = None,
    probabilities: Annotated[
        bool | None,
        typer.Option(
            "--probabilities/--no-probabilities",
            help="Answers carry one probability per class (env SERVEPATH_PROBABILITIES)",
        ),
    ] = None,
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
    request_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds from a request's first byte to its answer [default: 30]"),
    ] = None,
    max_in_flight: Annotated[
        int | None, typer.Option(help="Prediction requests in the building at once [512]")
    ] = None,
    max_queue_wait: Annotated[
        str | None,
        typer.Option(help="Expected queueing (s) past which requests are shed, or auto [auto]"),
    ] = None,
    max_connections: Annotated[
        str | None, typer.Option(help="Open connections, or auto (from the fd limit) [auto]")
    ] = None,
    header_timeout: Annotated[
        float | None, typer.Option(help="Seconds for a request head to arrive [10]")
    ] = None,
    body_timeout: Annotated[
        float | None, typer.Option(help="Seconds a request body may stall [10]")
    ] = None,
    keepalive_timeout: Annotated[
        float | None, typer.Option(help="Seconds an idle keep-alive connection stays [5]")
    ] = None,
    send_timeout: Annotated[
        float | None, typer.Option(help="Seconds a caller may stop reading its answer [30]")
    ] = None,
    max_header_bytes: Annotated[
        int | None, typer.Option(help="Largest request head, headers included [32768]")
    ] = None,
    max_headers: Annotated[int | None, typer.Option(help="Most request headers [100]")] = None,
    max_url_bytes: Annotated[int | None, typer.Option(help="Longest request line [8192]")] = None,
    path_echo: Annotated[
        str | None, typer.Option(help="Path-echo route, or 'off' [default: /_path]")
    ] = None,
    ui: Annotated[
        str | None,
        typer.Option(
            "--ui",
            metavar="ROUTE|off",
            help="The live page of what the server saw, or 'off' [default: /_ui]",
            show_default=False,
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            "--forwarded-allow-ips",
            metavar="IPS",
            help="Proxies whose Forwarded/X-Forwarded-For are believed: addresses and CIDRs, "
            "comma-separated, or '*' [default: SERVEPATH_FORWARDED_ALLOW_IPS, else none]",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="critical, error, warning, info, debug")
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option("--access-log/--no-access-log", help="One line per request on stdout"),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            help="Serve HTTPS with this certificate chain (PEM, leaf first); SIGHUP reloads "
            "it (env SERVEPATH_TLS_CERT)"
        ),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="The certificate's private key (env SERVEPATH_TLS_KEY)")
    ] = None,
    http_redirect_port: Annotated[
        int | None,
        typer.Option(
            help="Also answer plain HTTP on this port with redirects to HTTPS (env "
            "SERVEPATH_HTTP_REDIRECT_PORT)"
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            help="API keys, one NAME:KEY per line: predictions, /metrics, /_path and /docs "
            "then need one; SIGHUP rereads it (env SERVEPATH_API_KEY_FILE)"
        ),
    ] = None,
    protect_health: Annotated[
        bool | None,
        typer.Option(
            "--protect-health/--open-health",
            help="With keys, health and readiness need one too (env SERVEPATH_PROTECT_HEALTH) "
            "[default: open]",
            show_default=False,
        ),
    ] = None,
    open_routes: Annotated[
        str | None,
        typer.Option(
            metavar="PATHS",
            help="With keys, these paths stay open, comma-separated, e.g. /metrics,/docs "
            "(env SERVEPATH_OPEN_ROUTES)",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the start report as JSON, not as a table")
    ] = False,
) -> None:
    """Serve the model: POST /decisions, GET / health, V2 inference, /metrics, /_path."""
    out = get_output()
    try:
        settings = base_settings().with_values(
            host=host,
            port=port,
            workers=workers,
            model_name=model_name,
            model_schema=schema,
            probabilities=probabilities,
            cache_url=cache,
            store_url=store,
            durable=durable,
            grace_period=grace_period,
            max_body_bytes=max_body_bytes,
            max_instances=max_instances,
            log_level=log_level,
            request_timeout=request_timeout,
            max_in_flight=max_in_flight,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            keepalive_timeout=keepalive_timeout,
            send_timeout=send_timeout,
            max_header_bytes=max_header_bytes,
            max_headers=max_headers,
            max_url_bytes=max_url_bytes,
            access_log=access_log,
            tls_cert=tls_cert,
            tls_key=tls_key,
            http_redirect_port=http_redirect_port,
            api_key_file=api_key_file,
            protect_health=protect_health,
            open_routes=open_routes,
            forwarded_allow_ips=forwarded_allow_ips,
        )
        changes: dict[str, Any] = {}
        if model is not None:
            changes.update(model_location(model))
        if max_queue_wait is not None:
            changes["max_queue_wait"] = _auto(max_queue_wait, "--max-queue-wait", float)
        if max_connections is not None:
            changes["max_connections"] = _auto(max_connections, "--max-connections", int)
        if path_echo is not None:
            changes["path_echo_route"] = None if path_echo.lower() == "off" else path_echo
        if ui is not None:
            changes["ui_route"] = _ui_route(ui)
        if changes:
            settings = dataclasses.replace(settings, **changes)
        # Bad backend URLs are usage errors here, not tracebacks in a worker; nothing connects.
        from servepath.cache import open_cache
        from servepath.store import parse_store_url

        open_cache(settings)
        parse_store_url(settings.store_url, settings.data_dir)
    except ConfigError as exc:
        fail(out, json_out, "usage", str(exc), code=EXIT_USAGE)
    from servepath.service import server

    server.configure_logging(settings)
    if (
        settings.model_uri is None
        and settings.model_path is not None
        and not settings.model_path.is_file()
    ):
        fail(
            out,
            json_out,
            "usage",
            f"model file {settings.model_path} does not exist",
            code=EXIT_USAGE,
        )
    if settings.model_schema is not None and not settings.model_schema.is_file():
        fail(
            out,
            json_out,
            "usage",
            f"schema file {settings.model_schema} does not exist",
            code=EXIT_USAGE,
        )
    from servepath.service.app import access_policy

    try:
        access = access_policy(settings)
    except ConfigError as exc:
        fail(out, json_out, "usage", str(exc), code=EXIT_USAGE)
    certificate = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        from servepath.service.tls import check_certificate

        try:
            certificate = check_certificate(settings.tls_cert, settings.tls_key)
        except ConfigError as exc:
            fail(out, json_out, "usage", str(exc), code=EXIT_USAGE)
    # Bound before the example model is trained or any model loads: a taken port fails now.
    try:
        sock = server.bind_listener(settings.host, settings.port)
    except OSError as exc:
        fail(out, json_out, "bind", server.bind_error(settings.host, settings.port, exc))
    redirect_sock = None
    if settings.http_redirect_port is not None:
        try:
            redirect_sock = server.bind_listener(settings.host, settings.http_redirect_port)
        except OSError as exc:
            port = settings.http_redirect_port
            fail(out, json_out, "bind", server.bind_error(settings.host, port, exc))
    if (
        settings.model_path is None
        and settings.model_uri is None
        and not settings.default_model_path.exists()
    ):
        from servepath.model.example import write_example

        if not json_out:
            out.print(f"training the example model once into {settings.default_model_path} ...")
        try:
            accuracy = write_example(settings.default_model_path)
        except (OSError, ModelLoadError) as exc:
            fail(out, json_out, "model", f"cannot write the example model: {exc}")
        if not json_out:
            out.print(f"example model ready (held-out accuracy {accuracy:.3f})")
    if json_out:
        report = start_report(settings)
        if certificate is not None:
            report["tls"] = {
                "names": list(certificate.names),
                "subject": certificate.subject,
                "not_after": certificate.not_after.isoformat(),
                "http_redirect_port": settings.http_redirect_port,
            }
        report["access"] = {
            "api_keys": list(access.keys.names) if access.keys else [],
            "protect_health": access.protect_health,
            "open_routes": sorted(access.open_routes),
        }
        out.json(report)
    else:
        print_reachable(out, settings)
        if certificate is not None:
            print_tls(out, settings, certificate)
        out.print(f"  access: {access.describe()}")
        if access.keys is None and settings.host not in ("127.0.0.1", "::1", "localhost"):
            out.print(
                "  note: every caller that reaches this port can predict and read /metrics and "
                "/_path; --api-key-file FILE locks them (docs/security.md)"
            )
    code = server.run(settings, sock, redirect_sock)
    if code:
        raise typer.Exit(code)
