"""The flags every client command shares, declared once: the forward proxy, the trust
store, skipping the certificate check, and the API key. `request`, `http`, `load` and
`doctor` take them alike, so they read and are documented alike."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from servepath.errors import InputNotRead

ProxyOption = Annotated[
    str | None,
    typer.Option(
        metavar="URL",
        help="Forward proxy [default: from HTTP_PROXY / HTTPS_PROXY / ALL_PROXY, unless "
        "NO_PROXY covers the host].",
    ),
]
CafileOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="Trust this CA bundle instead of the system store [default: SSL_CERT_FILE].",
    ),
]
InsecureOption = Annotated[
    bool, typer.Option("--insecure", "-k", help="Do not verify the server's certificate.")
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        metavar="KEY",
        help="Send Authorization: Bearer KEY [default: SERVEPATH_API_KEY].",
        show_default=False,
    ),
]


def read_input(source: str | Path) -> bytes:
    """The bytes of ``--data``: a file, or ``-`` for stdin (an unreadable one is bad usage)."""
    try:
        return sys.stdin.buffer.read() if str(source) == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise InputNotRead(str(source), exc.strerror or str(exc)) from exc
