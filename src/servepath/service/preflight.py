"""What `servepath serve` checks and prepares before the server starts: the settings'
files and backends, the access policy, the TLS certificate, the bound listeners, the
example model, and the start report and banner that say where it can be reached.

Each check raises a :class:`~servepath.errors.ServepathError` that names what is wrong;
the command line only prints. Binding and running stay in :mod:`servepath.service.server`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from servepath.config import Settings
from servepath.errors import BindFailed, ConfigError, ExampleModelNotWritten, ModelLoadError
from servepath.net.endpoints import host_port
from servepath.net.interfaces import answering_addresses, local_addresses, url_for

if TYPE_CHECKING:
    from pathlib import Path

    from servepath.service.auth import AccessPolicy
    from servepath.service.tls import Certificate

__all__ = [
    "Listeners",
    "banner_lines",
    "bind",
    "check_settings",
    "check_tls",
    "ensure_example_model",
    "start_document",
    "start_report",
    "tls_lines",
]


@dataclass(frozen=True)
class Listeners:
    """The sockets the server takes over: its port, and the plain-HTTP redirect's."""

    main: socket.socket
    redirect: socket.socket | None = None
    health: socket.socket | None = None


def check_settings(settings: Settings) -> AccessPolicy:
    """Check what the settings name before anything starts; the access policy they give.

    Bad backend URLs, missing model or schema files and unusable keys raise
    :class:`~servepath.errors.ConfigError` here, not tracebacks in a worker; nothing connects.
    """
    from servepath.cache import open_cache
    from servepath.service.app import access_policy
    from servepath.store import parse_store_url

    open_cache(settings)
    parse_store_url(settings.store_url, settings.data_dir)
    if settings.reference_profile is not None:
        from servepath.model.profile import read_profile

        # Read now so that a file that is no profile fails before the port is bound; whether
        # its features are the model's is known once the model has loaded.
        read_profile(settings.reference_profile)
    if settings.model_repository is not None:
        check_repository(settings)
        return access_policy(settings)
    source = settings.model_source
    if source.kind == "path" and source.path is not None and not source.path.is_file():
        raise ConfigError(f"model file {source.location} does not exist")
    if settings.model_sha256 is not None and source.kind != "example":
        # A pinned artifact is checked (a remote one fetched into the data directory, where
        # the load finds it again) before the port is bound: a mismatch never serves.
        source.local_path(
            settings.data_dir,
            gcs_endpoint=settings.gcs_endpoint,
            s3_endpoint=settings.s3_endpoint,
            sha256=settings.model_sha256,
            allow_http=settings.allow_http_model,
        )
    if settings.model_schema is not None and not settings.model_schema.is_file():
        raise ConfigError(f"schema file {settings.model_schema} does not exist")
    return access_policy(settings)


def check_repository(settings: Settings) -> None:
    """A model repository holds versions, and the version ``--model`` names among them."""
    from servepath.model.repository import ModelRepository

    repository = ModelRepository(
        settings.model_repository or "",
        gcs_endpoint=settings.gcs_endpoint,
        s3_endpoint=settings.s3_endpoint,
    )
    try:
        label = settings.model_label or repository.latest()
        if not repository.remote:
            repository.source(label)
    except ModelLoadError as exc:
        raise ConfigError(f"model repository {settings.model_repository}: {exc.reason}") from exc


def check_tls(settings: Settings) -> Certificate | None:
    """The certificate the server will present (checked against its key), if TLS is on."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    from servepath.service.tls import check_certificate

    return check_certificate(settings.tls_cert, settings.tls_key)


def bind(settings: Settings) -> Listeners:
    """Bind the server's port (and the redirect's) now, before any model loads: a taken port
    fails at once, naming who holds it, not after a minute of training."""
    bound: list[socket.socket] = []
    try:
        for port in (settings.port, settings.http_redirect_port, settings.health_port):
            if port is not None:
                bound.append(_bind_one(settings.host, port))
    except BindFailed:  # no port is kept half-bound
        for sock in bound:
            sock.close()
        raise
    main, *rest = bound
    redirect = rest.pop(0) if settings.http_redirect_port is not None else None
    health = rest.pop(0) if settings.health_port is not None else None
    return Listeners(main, redirect, health)


def _bind_one(host: str, port: int) -> socket.socket:
    from servepath.service import server

    try:
        return server.bind_listener(host, port)
    except OSError as exc:
        raise BindFailed(server.bind_error(host, port, exc)) from exc


def ensure_example_model(
    settings: Settings, on_training: Callable[[Path], None] | None = None
) -> float | None:
    """Train the example model once when no model is given and none is there yet; its
    held-out accuracy, or None when nothing was trained. ``on_training`` is told first."""
    source = settings.model_source
    if settings.model_repository is not None:
        return None
    if source.kind != "example" or source.path is None or source.path.exists():
        return None
    from servepath.model.example import write_example

    if on_training is not None:
        on_training(source.path)
    try:
        return write_example(source.path)
    except (OSError, ModelLoadError) as exc:
        raise ExampleModelNotWritten(str(exc)) from exc


_KIND_NOTE = {
    "loopback": "this machine only",
    "private": "internal: reachable inside this network",
    "cgnat": "carrier-grade NAT: inside the provider's network",
    "public": "external: reachable from the internet if the firewall allows",
    "link-local": "this link only",
}


def start_report(settings: Settings) -> dict[str, Any]:
    """What the start banner says, as data: where it listens, its routes and its limits."""
    from servepath.service.gate import HttpLimits

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
        "health_port": settings.health_port,
        "workers": settings.workers,
        "limits": {
            **HttpLimits.from_settings(settings).to_json(),
            "max_in_flight": settings.max_in_flight,
            "max_queue_wait_s": settings.max_queue_wait,
            "keepalive_timeout_s": settings.keepalive_timeout,
            "shed_status": settings.shed_status,
            "backlog": settings.backlog,
            "max_body_bytes": settings.max_body_bytes,
            "max_instances": settings.max_instances,
            "grace_period_s": settings.grace_period,
        },
        "traces": None
        if settings.otlp_endpoint is None
        else {"otlp_endpoint": settings.otlp_endpoint, "sample": settings.trace_sample},
    }


def start_document(
    settings: Settings, certificate: Certificate | None, access: AccessPolicy
) -> dict[str, Any]:
    """The start report with the certificate and the access policy: `serve --json`."""
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
    return report


def banner_lines(settings: Settings) -> list[str]:
    """The start banner: where it listens and is reachable, its routes, its limits."""
    report = start_report(settings)
    lines: list[str] = []
    lines.append(f"servepath listening on {report['listening']}; reachable at:")
    for a in report["reachable"]:
        lines.append(f"  {a['url']:<40} {a['interface']:<10} {a['kind']:<9} {a['note']}")
    if report["loopback_only"]:
        lines.append(
            "  note: bound to loopback only; other machines and containers cannot reach it. "
            "Use --host 0.0.0.0 to listen on every interface."
        )
    lines.append(
        f"  predict: POST {settings.predict_route}   health: GET {settings.health_route}   "
        "live: GET /v2/health/live   docs: /docs   metrics: /metrics"
    )
    if settings.health_port is not None:
        lines.append(
            f"  health port: {host_port(settings.host, settings.health_port)} (plain HTTP) "
            f"answers health, readiness and /metrics only, with its own accept queue"
        )
    limits = report["limits"]
    wait = limits["max_queue_wait_s"]
    lines.append(
        f"  limits: {limits['max_in_flight']} requests in flight, queue wait "
        f"{'auto' if wait is None else f'{wait:g} s'}, {limits['max_connections']} connections, "
        f"request timeout {limits['request_timeout_s']:g} s, header timeout "
        f"{limits['header_timeout_s']:g} s, idle keep-alive {limits['keepalive_timeout_s']:g} s, "
        f"shed with {limits['shed_status']}"
    )
    traces = report["traces"]
    if traces is not None:
        lines.append(
            f"  traces: OTLP/HTTP to {traces['otlp_endpoint']}, {traces['sample']:.0%} of new "
            "traces sampled (a caller's sampled traceparent always is)"
        )
    return lines


def tls_lines(settings: Settings, certificate: Certificate) -> list[str]:
    """The banner's TLS lines: the certificate, its reload, the redirect, its age."""
    from servepath.service.tls import certificate_age_note

    lines: list[str] = []

    redirect = settings.http_redirect_port
    lines.append(
        f"  tls: {certificate.describe()}; SIGHUP reloads it"
        + (f"; plain HTTP on port {redirect} redirects here" if redirect else "")
    )
    note = certificate_age_note(certificate)
    if note:
        lines.append(f"  warning: {note}")
    return lines
