"""Running the service: the listening socket, uvicorn, worker processes, logging, draining.

``bind_listener`` binds before the model loads (a taken port fails at once); ``run`` serves
the app on that socket with :class:`~servepath.service.protocol.ServepathHttpProtocol`, in
this process or in ``settings.workers`` worker processes that share it.

Draining (SIGTERM/SIGINT): the server stops accepting, but first takes every connection
already waiting in the listen backlog (a client that connected has sent, or is sending, its
request); connections whose next request waits unread are read and answered; pipelined
requests already parsed are answered; an idle keep-alive connection answers a request that
comes within a second; every response then says ``Connection: close``, and every connection
ends with FIN, never a reset (:meth:`ServepathHttpProtocol.shutdown`).
Readiness answers 503 "draining" meanwhile. What is not done within ``grace_period`` is
cancelled, then the prediction log is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import logging.config
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import uvicorn
from uvicorn.supervisors import multiprocess

from servepath.config import Settings, serialized_env
from servepath.net.endpoints import host_port
from servepath.process import die_with_parent
from servepath.service import tls
from servepath.service.gate import Gate, HttpLimits
from servepath.service.protocol import ServepathConfig, ServepathHttpProtocol
from servepath.service.security import SERVER_HEADERS
from servepath.service.state import listen_samples
from servepath.service.tls_listener import TlsListener

log = logging.getLogger(__name__)

#: The start-up exit status when the app's startup failed (uvicorn has said why).
STARTUP_FAILED = 3
#: The exit status when the model did not load (the log has said why, after the banner).
MODEL_FAILED = 1
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


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
        from servepath.net.listeners import inspect_port

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


def logging_config(settings: Settings) -> dict[str, Any]:
    """One logging set-up for the parent and every worker (uvicorn applies it in each).

    servepath's own lines and uvicorn's go to stderr, with the worker's pid when there are
    several; the access log (``--access-log``) goes to stdout, one line per request.
    """
    level = settings.log_level.upper()
    fmt = WORKER_LOG_FORMAT if settings.workers > 1 else LOG_FORMAT
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {"format": fmt},
            "access": {"format": "%(asctime)s %(message)s"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["access"], "level": "WARNING", "propagate": False},
            "servepath": {"handlers": ["default"], "level": level, "propagate": False},
            "servepath.access": {
                "handlers": ["access"],
                "level": "INFO" if settings.access_log else "WARNING",
                "propagate": False,
            },
        },
    }


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))


def uvicorn_config(
    settings: Settings, app: Any, gate: Gate | None = None, *, own_logging: bool = True
) -> ServepathConfig:
    """uvicorn's Config for ``app`` (an ASGI app, or the import string of a factory), with
    ``gate`` for its connections to consult (a worker process puts its own there).

    ``own_logging`` false leaves the process's logging as it is (an embedding program's).
    """
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": ServepathHttpProtocol,
        "lifespan": "on",
        # The path echo reports the real TCP peer; forwarded headers are reported, not trusted.
        "proxy_headers": False,
        "server_header": False,
        # On every response, uvicorn's and the protocol's own answers included.
        "headers": list(SERVER_HEADERS),
        "access_log": False,
        "log_config": logging_config(settings) if own_logging else None,
        "log_level": settings.log_level.lower(),
        "timeout_keep_alive": settings.keepalive_timeout,
        "timeout_graceful_shutdown": settings.grace_period,
        # Connections wait here for accept(); past it the kernel drops SYNs (clients retry).
        "backlog": settings.backlog,
    }
    if settings.tls_cert is not None and settings.tls_key is not None:
        options.update(ssl_certfile=str(settings.tls_cert), ssl_keyfile=str(settings.tls_key))
    if isinstance(app, str):
        options.update(factory=True, workers=settings.workers)
    config = ServepathConfig(app, **options)
    config.gate = gate
    return config


#: The health port's accept queue: a few probers, never a crowd.
HEALTH_BACKLOG = 64


class ServepathServer(uvicorn.Server):
    """uvicorn's Server, draining the listen backlog before it stops accepting, and
    reloading its TLS certificate (and, through the gate, the API keys) on SIGHUP.

    With TLS it listens through :class:`~servepath.service.tls_listener.TlsListener`
    (connections counted and given a handshake deadline from accept), not through the
    loop's own TLS server."""

    config: ServepathConfig
    tls_listener: TlsListener | None = None
    #: The health port's listeners (``--health-port``): plain HTTP, served by the same
    #: app, their connections told apart by the port they came to.
    health_servers: Sequence[asyncio.AbstractServer] = ()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if self.config.ssl is not None:
            tls.harden(self.config.ssl)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # Only the main thread may take signals (an embedding program's thread cannot).
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)
        gate = self.config.gate
        if gate is not None:
            gate.on_fail(self._fail)
        health_port = gate.health_port if gate is not None else None
        health = [s for s in sockets or () if s.getsockname()[1] == health_port]
        sockets = [s for s in sockets or () if s not in health] or None
        if sockets and gate is not None:
            fd, backlog = sockets[0].fileno(), self.config.backlog
            gate.metrics.watch(lambda: listen_samples(fd, backlog))
        if self.config.ssl is not None and sockets:
            await self._start_tls(self.config.ssl, sockets)
        else:
            await super().startup(sockets)
        if health and self.started:
            loop = asyncio.get_running_loop()
            self.health_servers = [
                await loop.create_server(self._plain_protocol, sock=sock, backlog=HEALTH_BACKLOG)
                for sock in health
            ]
            # uvicorn closes what is in its list at shutdown (the loop's Server, typed apart)
            self.servers = [*self.servers, *cast(list[Any], self.health_servers)]

    def _plain_protocol(self) -> asyncio.Protocol:
        """One plain-HTTP connection's protocol (the health port's, whatever the main's)."""
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
            _loop=asyncio.get_running_loop(),
        )

    async def _start_tls(self, context: ssl.SSLContext, sockets: list[socket.socket]) -> None:
        """uvicorn's startup for listening sockets, with TLS done by the listener."""
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILED)  # uvicorn exits 3 too
        loop = asyncio.get_running_loop()
        config = self.config

        limits = config.gate.limits if config.gate is not None else HttpLimits()
        listener = TlsListener(
            context, self._plain_protocol, self.server_state, limits, config.gate, loop
        )
        self.tls_listener = listener
        self.servers = [
            await loop.create_server(listener.accept, sock=sock, backlog=config.backlog)
            for sock in sockets
        ]
        self.started = True

    def _fail(self, reason: str) -> None:
        log.error("stopping: the model did not load (--on-model-failure stay keeps serving): %s",
                  reason)  # fmt: skip
        self.should_exit = True

    def reload(self) -> None:
        """SIGHUP: the TLS certificate and the API keys are read again; what no longer
        loads keeps serving as it was, and the log says why."""
        context = self.config.ssl
        if context is not None:
            cert, key = Path(self.config.ssl_certfile or ""), Path(self.config.ssl_keyfile or "")
            tls.reload_certificate(context, cert, key)
        gate = self.config.gate
        if gate is not None:
            gate.reload()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        gate = self.config.gate
        if gate is not None:
            gate.begin_drain()
        waiting = self._take_backlog()
        # The listeners close at once, with no await after the last accept(): a connection
        # completed in between would sit in the backlog and be reset with its request.
        for server in getattr(self, "servers", []):
            server.close()
        for sock in sockets or ():
            sock.close()
        await self._serve_taken(waiting)
        await super().shutdown(sockets)
        if self.tls_listener is not None:
            self.tls_listener.heap.close()

    def _take_backlog(self) -> list[socket.socket]:
        """The connections waiting for accept(): their requests are on the way."""
        taken = []
        for server in getattr(self, "servers", []):
            if server in self.health_servers:  # probes during a drain are answered no more
                continue
            for listener in server.sockets or ():
                try:
                    sock = socket.socket(fileno=os.dup(listener.fileno()))
                except OSError:
                    continue
                with contextlib.closing(sock):
                    sock.setblocking(False)
                    while True:
                        try:
                            conn, _ = sock.accept()
                        except OSError:
                            break
                        conn.setblocking(False)
                        taken.append(conn)
        return taken

    async def _serve_taken(self, taken: list[socket.socket]) -> None:
        """Serve the connections taken from the backlog, each answered with Connection: close."""
        loop = asyncio.get_running_loop()
        config = self.config

        def protocol() -> asyncio.Protocol:
            proto = ServepathHttpProtocol(
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=loop,
            )
            proto.begin_drain()
            return proto

        if self.tls_listener is not None:
            # TLS: the same accept path as ever, told that the server drains.
            self.tls_listener.begin_drain()
            protocol = self.tls_listener.accept
        served = 0
        for conn in taken:
            try:
                await loop.connect_accepted_socket(protocol, conn)
            except OSError:
                conn.close()
                continue
            served += 1
        if served:
            log.info("draining: took %d connections waiting in the listen backlog", served)


class _WorkerProcess(multiprocess.Process):
    """uvicorn's worker process, running :class:`ServepathServer`, and draining (SIGTERM)
    when its parent dies, however it died: a parent killed by SIGKILL would otherwise leave
    its workers serving on, orphaned."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            # Each worker builds its own gate and app, and hands the gate to its connections.
            app, gate = build_app(Settings.from_env())
            config = self.config
            config.app, config.factory = app, False
            config.gate = gate  # type: ignore[attr-defined]
            gate.on_fail(_tell_the_supervisor)
            self._server = ServepathServer(config=config)
        return self._server

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover
        die_with_parent()
        _ = self.server  # built before uvicorn's health-check thread can ask for it
        super().target(sockets)


#: In the workers' shared metrics directory: a worker's model did not load (and why).
MODEL_FAILED_MARK = "model-failed"


def _tell_the_supervisor(reason: str) -> None:
    """A worker's model did not load: leave the reason where the supervising parent looks
    (the directory it made for the workers' metrics) and stop the parent, which stops every
    worker; it then exits non-zero instead of starting workers that fail the same way."""
    # The supervisor put the directory in this process's environment before starting it.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        with contextlib.suppress(OSError):
            Path(directory, MODEL_FAILED_MARK).write_text(reason)
    os.kill(os.getppid(), signal.SIGTERM)


def build_app(settings: Settings) -> tuple[Any, Gate]:
    """One process's gate and the app built around it (the data plane installs its admission
    into the gate; the server hands the same gate to every connection)."""
    from servepath.service.app import create_app
    from servepath.service.metrics import Metrics

    gate = Gate(settings, Metrics(multiprocess=settings.workers > 1))
    # The supervisor put the workers' shared directory in this process's environment.
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR") if settings.workers > 1 else None
    return create_app(settings, gate=gate, shared_dir=shared), gate


def run(
    settings: Settings,
    sock: socket.socket,
    redirect_sock: socket.socket | None = None,
    health_sock: socket.socket | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean drain, 3 when startup failed.

    ``redirect_sock``: a plain-HTTP listener answered with redirects to HTTPS meanwhile;
    ``health_sock``: the health port's listener (``--health-port``)."""
    redirect = None
    if redirect_sock is not None:
        fallback = settings.host if settings.host not in ("0.0.0.0", "::") else "localhost"
        redirect = tls.RedirectServer(redirect_sock, settings.port, fallback)
        redirect.start()
    try:
        return _run(settings, [sock] if health_sock is None else [sock, health_sock])
    finally:
        if redirect is not None:
            redirect.stop()


def _run(settings: Settings, sockets: list[socket.socket]) -> int:
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal to the handler that was in
    # place before it started; a no-op handler here turns a clean drain into exit status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    if settings.workers == 1:
        app, gate = build_app(settings)
        config = uvicorn_config(settings, app, gate)
        server = ServepathServer(config)
        server.run(sockets=sockets)
        if gate.failed is not None:
            return MODEL_FAILED
        return 0 if server.started else STARTUP_FAILED
    # Worker processes rebuild the same Settings, and share metrics through files; they
    # accept from the one socket bound here.
    metrics_dir = tempfile.mkdtemp(prefix="servepath-metrics-")
    os.environ.update(serialized_env(settings))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # The app is built in each worker (``_WorkerProcess.server``); the name here only
    # satisfies uvicorn's own check that what it sends to its workers can be pickled.
    config = uvicorn_config(settings, "servepath.service.app:create_app")
    # uvicorn 0.54's supervisor makes its workers from this module-level name: each worker
    # then runs ServepathServer (pinned version; the name is read only in this process).
    multiprocess.Process = _WorkerProcess  # type: ignore[misc]
    try:
        multiprocess.Multiprocess(config, sockets=sockets).run()
        failed = Path(metrics_dir, MODEL_FAILED_MARK)
        if failed.exists():
            log.error("stopped: a worker's model did not load: %s", failed.read_text())
            return MODEL_FAILED
        return 0
    finally:
        # The workers' shared files (metrics, the live page's lists, model control) are
        # this run's alone: a stopped server leaves none behind.
        shutil.rmtree(metrics_dir, ignore_errors=True)
