"""A throwaway nginx (Debian's binary) with a config written for one test."""

from __future__ import annotations

from pathlib import Path

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
