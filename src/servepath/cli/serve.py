"""`servepath serve`: run the model API (binding, workers and running live in service.server)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from servepath.cli._app import app, base_settings, get_output
from servepath.config import (
    DEFAULT_CANDIDATE_WEIGHT,
    DEFAULT_SHADOW_SHARE,
    model_location,
    parse_auto,
)
from servepath.errors import ConfigError
from servepath.model.schema_file import RULE as SCHEMA_RULE


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
            "https:// (env SERVEPATH_MODEL, AIP_STORAGE_URI); with --model-repository, a version "
            "folder's name [default: example; with a repository, its highest version]"
        ),
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(help="Name the model is served as (env SERVEPATH_MODEL_NAME)")
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option(
            help="JSON schema of the inputs, winning over what the model says (env "
            f"SERVEPATH_MODEL_SCHEMA) [default, when it exists: {SCHEMA_RULE}]"
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
        float | None,
        typer.Option(
            help="Seconds an idle keep-alive connection stays; above the proxy's in front "
            "(env SERVEPATH_KEEPALIVE_TIMEOUT) [5; on Vertex AI 620]"
        ),
    ] = None,
    shed_status: Annotated[
        int | None,
        typer.Option(
            metavar="429|503",
            help="Status of a request shed for the load, with Retry-After either way; 429 "
            "keeps proxies that eject backends after 5xx from ejecting a busy replica "
            "(env SERVEPATH_SHED_STATUS) [503]",
            show_default=False,
        ),
    ] = None,
    on_model_failure: Annotated[
        str | None,
        typer.Option(help="A model that does not load: exit (non-zero) or stay up unready [exit]"),
    ] = None,
    backlog: Annotated[
        int | None,
        typer.Option(
            help="Connections waiting for accept(), past which the kernel drops SYNs [4096]"
        ),
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
    model_sha256: Annotated[
        str | None,
        typer.Option(
            metavar="HEX",
            help="Serve the model only if its file has this SHA-256 (sha256sum FILE), checked "
            "before it loads: a joblib/pickle file runs code (env SERVEPATH_MODEL_SHA256)",
        ),
    ] = None,
    model_repository: Annotated[
        str | None,
        typer.Option(
            metavar="LOCATION",
            help="Versions of one model, a folder each (LOCATION/2/model.joblib; a directory, "
            "gs://… or s3://…): the highest serves, or the one --model names "
            "(env SERVEPATH_MODEL_REPOSITORY)",
        ),
    ] = None,
    model_control: Annotated[
        str | None,
        typer.Option(
            metavar="none|explicit",
            help="explicit: serve the model repository routes (load, unload, index, promote, "
            "rollback) to --admin-keys; needs --api-key-file (env SERVEPATH_MODEL_CONTROL) "
            "[default: none]",
            show_default=False,
        ),
    ] = None,
    admin_keys: Annotated[
        str | None,
        typer.Option(
            metavar="NAME[,NAME]",
            help="Names of the keys in --api-key-file that may call model control "
            "(env SERVEPATH_ADMIN_KEYS)",
        ),
    ] = None,
    candidate: Annotated[
        str | None,
        typer.Option(
            metavar="VERSION|PATH",
            help="A canary: this version answers --candidate-weight %% of callers, the same "
            "callers always (env SERVEPATH_CANDIDATE)",
        ),
    ] = None,
    candidate_weight: Annotated[
        float | None,
        typer.Option(
            metavar="PCT",
            help="Percent of callers the candidate answers (env SERVEPATH_CANDIDATE_WEIGHT)",
        ),
    ] = None,
    shadow: Annotated[
        str | None,
        typer.Option(
            metavar="VERSION|PATH",
            help="A version that sees copies of requests after they are answered; its answers "
            "go only to the prediction log (env SERVEPATH_SHADOW)",
        ),
    ] = None,
    shadow_share: Annotated[
        float | None,
        typer.Option(
            metavar="FRACTION",
            help="Fraction of requests copied to the shadow, 0 to 1 (env SERVEPATH_SHADOW_SHARE)",
        ),
    ] = None,
    reference_profile: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="The model's reference profile (servepath model profile): live drift of the "
            "inputs on /metrics (servepath_feature_drift) and the live page; refused when its "
            "features are not the model's (env SERVEPATH_REFERENCE_PROFILE)",
        ),
    ] = None,
    drift_window: Annotated[
        int | None,
        typer.Option(
            metavar="ROWS",
            help="Latest rows live drift covers, per worker (env SERVEPATH_DRIFT_WINDOW) "
            "[default: 10000]",
        ),
    ] = None,
    max_model_bytes: Annotated[
        int | None,
        typer.Option(
            metavar="BYTES",
            help="Refuse an artifact larger than this before it loads (env "
            "SERVEPATH_MAX_MODEL_BYTES) [default: no bound]",
            show_default=False,
        ),
    ] = None,
    allow_http_model: Annotated[
        bool | None,
        typer.Option(
            "--allow-http-model/--no-allow-http-model",
            help="Accept a plain http:// --model URL (anyone on the path can swap it) (env "
            "SERVEPATH_ALLOW_HTTP_MODEL) [default: refused]",
            show_default=False,
        ),
    ] = None,
    trust_forwarded: Annotated[
        bool | None,
        typer.Option(
            "--trust-forwarded/--no-trust-forwarded",
            help="Also believe RFC 7239 Forwarded from those proxies, only if they write it "
            "and drop the caller's (env SERVEPATH_TRUST_FORWARDED) [default: X-Forwarded-For "
            "only]",
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
    health_port: Annotated[
        int | None,
        typer.Option(
            help="Also answer health, readiness and /metrics (plain HTTP) on this port, with "
            "its own accept queue: probes never wait behind predictions (env "
            "SERVEPATH_HEALTH_PORT)"
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
    otlp_endpoint: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Send traces (OTLP over HTTP/protobuf) to this receiver, e.g. "
            "http://collector:4318 (env SERVEPATH_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT) "
            "[default: no tracing]",
            show_default=False,
        ),
    ] = None,
    trace_sample: Annotated[
        float | None,
        typer.Option(
            metavar="FRACTION",
            help="Fraction of new traces sampled, 0 to 1; a caller's sampled traceparent is "
            "always honoured (env SERVEPATH_TRACE_SAMPLE) [default: 1]",
            show_default=False,
        ),
    ] = None,
    trace_queue: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Traced requests waiting for export past which spans are dropped and counted "
            "(env SERVEPATH_TRACE_QUEUE) [default: 2048]",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the start report as JSON, not as a table")
    ] = False,
) -> None:
    """Serve the model: POST /decisions, GET / health, V2 inference, /metrics, /_path."""
    out = get_output()
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
        shed_status=shed_status,
        backlog=backlog,
        on_model_failure=on_model_failure,
        send_timeout=send_timeout,
        max_header_bytes=max_header_bytes,
        max_headers=max_headers,
        max_url_bytes=max_url_bytes,
        access_log=access_log,
        tls_cert=tls_cert,
        tls_key=tls_key,
        http_redirect_port=http_redirect_port,
        health_port=health_port,
        api_key_file=api_key_file,
        protect_health=protect_health,
        open_routes=open_routes,
        forwarded_allow_ips=forwarded_allow_ips,
        trust_forwarded=trust_forwarded,
    )
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "model_repository": model_repository,
            "model_control": model_control,
            "admin_keys": admin_keys,
            "candidate": candidate,
            "candidate_weight": candidate_weight,
            "shadow": shadow,
            "shadow_share": shadow_share,
            "max_model_bytes": max_model_bytes,
            "otlp_endpoint": otlp_endpoint,
            "trace_sample": trace_sample,
            "trace_queue": trace_queue,
            "reference_profile": reference_profile,
            "drift_window": drift_window,
        }.items()
        if v is not None
    }
    if candidate is not None and candidate_weight is None and not settings.candidate_weight:
        changes["candidate_weight"] = DEFAULT_CANDIDATE_WEIGHT
    if shadow is not None and shadow_share is None and not settings.shadow_share:
        changes["shadow_share"] = DEFAULT_SHADOW_SHARE
    if model is not None:
        changes.update(model_location(model))
    if model_sha256 is not None:
        changes["model_sha256"] = model_sha256
    if allow_http_model is not None:
        changes["allow_http_model"] = allow_http_model
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
    from servepath.service import preflight, server

    server.configure_logging(settings)
    access = preflight.check_settings(settings)
    certificate = preflight.check_tls(settings)
    listeners = preflight.bind(settings)
    accuracy = preflight.ensure_example_model(
        settings,
        None
        if json_out
        else lambda path: out.print(f"training the example model once into {path} ..."),
    )
    if json_out:
        out.json(preflight.start_document(settings, certificate, access))
    else:
        if accuracy is not None:
            out.print(f"example model ready (held-out accuracy {accuracy:.3f})")
        for line in preflight.banner_lines(settings):
            out.print(line)
        if certificate is not None:
            for line in preflight.tls_lines(settings, certificate):
                out.print(line)
        out.print(f"  access: {access.describe()}")
        if access.keys is None and settings.host not in ("127.0.0.1", "::1", "localhost"):
            out.print(
                "  note: every caller that reaches this port can predict and read /metrics and "
                "/_path; --api-key-file FILE locks them (docs/security.md)"
            )
    code = server.run(settings, listeners.main, listeners.redirect, listeners.health)
    if code:
        raise typer.Exit(code)
