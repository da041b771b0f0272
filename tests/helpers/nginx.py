"""A throwaway nginx (Debian's binary) with a config written for one test."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, need_binary

HEADER = """
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{servers}
}}
"""

PROXY_SERVER = """
    server {{
        listen {listen}{ssl};
        {tls}
        location / {{
            proxy_pass http://{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 2s;
        }}
    }}
"""


def proxy_config(
    directory: Path,
    servers: list[tuple[str, str, tuple[Path, Path] | None]],
) -> Path:
    """Write an nginx config proxying each ``(listen, upstream, (cert, key) or None)``."""
    blocks = []
    for listen, upstream, tls in servers:
        tls_lines = (
            f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]};" if tls is not None else ""
        )
        blocks.append(
            PROXY_SERVER.format(
                listen=listen, upstream=upstream, ssl=" ssl" if tls else "", tls=tls_lines
            )
        )
    conf = directory / "nginx.conf"
    conf.write_text(HEADER.format(dir=directory, servers="".join(blocks)))
    return conf


@contextlib.contextmanager
def nginx_in_front(tmp_path: Path, upstream_port: int) -> Iterator[str]:
    """A real nginx on 127.0.0.1 proxying to the server, with
    ``proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for``."""
    nginx = need_binary("nginx")
    directory = tmp_path / "nginx"
    directory.mkdir()
    port = free_port()
    conf = proxy_config(directory, [(f"127.0.0.1:{port}", f"127.0.0.1:{upstream_port}", None)])
    process = subprocess.Popen(
        [nginx, "-p", str(directory), "-e", str(directory / "startup.log"), "-c", str(conf),
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"nginx did not start: {stderr}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
