"""The access log: one line per request whatever the caller sends, escaped as nginx does.

The target goes to the log undecoded (``%0a`` stays ``%0a``); a byte that could end a
line, drive a terminal or break the quoting (below 0x20, ``"``, ``\\``, 0x7f and up) is
written ``\\xXX``. The real server on a loopback port, fed raw request lines.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator

import pytest

from servepath.config import Settings
from servepath.model.loaded import LoadedModel
from servepath.service.accesslog import escaped, request_target
from tests.service.live import LiveServer, connect, live_server, read_until_closed

# What a line may hold: printable ASCII only.
PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


@pytest.fixture(scope="module")
def server(example_model: LoadedModel) -> Iterator[LiveServer]:
    settings = Settings(store_url="off", cache_url="off", access_log=True)
    with live_server(settings, example_model) as live:
        yield live


def send(server: LiveServer, target: bytes, method: bytes = b"GET") -> bytes:
    with connect(server.port) as s:
        s.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return read_until_closed(s)


def logged_after(caplog: pytest.LogCaptureFixture, marker: str) -> list[str]:
    """The access lines of the request whose target holds ``marker`` (logged after the
    answer is sent: wait for the line, not for a time)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [
            r.getMessage()
            for r in caplog.records
            if r.name == "servepath.access" and marker in r.getMessage()
        ]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.005)


FORGED = b"/decisions%0a127.0.0.1:1%20%22POST%20/decisions%20HTTP/1.1%22%20200%20key=alice"

# (name, target as sent, what the line must show of it)
ATTACKS = [
    ("%0a forges no line", b"/a%0aforged", "/a%0aforged"),
    ("%0d%0a forges no line", b"/b%0d%0a%0d%0aforged", "/b%0d%0a%0d%0aforged"),
    ("a whole forged request line", FORGED, FORGED.decode()),
    ("%1b[31m stays text", b"/c%1b[31mred%1b[0m", "/c%1b[31mred%1b[0m"),
    ("%22 cannot close the quotes", b"/d%22%20200", "/d%22%20200"),
    ("%5c stays text", b"/e%5cx", "/e%5cx"),
    ("%00 stays text", b"/f%00x", "/f%00x"),
    ("%7f and %c2%85 (NEL) stay text", b"/g%7f%c2%85", "/g%7f%c2%85"),
    ("U+2028 percent-encoded", b"/h%e2%80%a8x", "/h%e2%80%a8x"),
    ("the query is logged undecoded", b"/i?q=%0a%1b", "/i?q=%0a%1b"),
    ("a raw quote in the query is escaped", b'/j?q="x"', "/j?q=\\x22x\\x22"),
    ("a raw backslash is escaped", b"/k\\x", "/k\\x5Cx"),
    ("double encoding stays as sent", b"/l%250a", "/l%250a"),
]


@pytest.mark.parametrize(("target", "shown"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_a_caller_cannot_write_lines_or_terminal_codes_into_the_access_log(
    server: LiveServer, caplog: pytest.LogCaptureFixture, target: bytes, shown: str
) -> None:
    caplog.set_level(logging.INFO, logger="servepath.access")
    answer = send(server, target)
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    status = int(answer.split()[1])
    assert status < 500
    marker = shown.split("?")[0][:3]
    lines = logged_after(caplog, f'"GET {marker}')
    assert len(lines) == 1, lines
    [line] = lines
    assert PRINTABLE.match(line), line
    assert f'"GET {shown} HTTP' not in line  # the version is not part of our line
    assert f'"GET {shown}" {status} ' in line, line
    assert "\x1b" not in line and "\n" not in line and "\r" not in line


# Raw bytes a caller may put on the request line itself: the server refuses them (400) or
# logs them escaped; either way the line is printable.
RAW = [b"/m\x1b[31m", b"/n\x7f", b"/o\x85", b"/p\xe2\x80\xa8", b"/q\x00", b"/r\x0b", b"/s\x01"]


@pytest.mark.parametrize("target", RAW, ids=[repr(t) for t in RAW])
def test_raw_control_bytes_on_the_request_line_never_reach_the_log_raw(
    server: LiveServer, caplog: pytest.LogCaptureFixture, target: bytes
) -> None:
    caplog.set_level(logging.INFO, logger="servepath.access")
    answer = send(server, target)
    assert answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 2"), answer[:100]
    if answer.startswith(b"HTTP/1.1 4") and b"servepath" not in answer:
        return  # refused before the app: no access line at all
    lines = logged_after(caplog, '"GET ' + target[:2].decode())
    for line in lines:
        assert PRINTABLE.match(line), line


def test_escaping_matches_nginx() -> None:
    assert escaped(b'a\nb"c\\d\x1be\x7f\xff') == "a\\x0Ab\\x22c\\x5Cd\\x1Be\\x7F\\xFF"
    assert escaped("plain/path?x=1") == "plain/path?x=1"
    assert escaped("é") == "\\xC3\\xA9"


def test_the_target_is_the_undecoded_one_and_bounded() -> None:
    scope = {"path": "/a\nb", "raw_path": b"/a%0ab", "query_string": b"x=%0a"}
    assert request_target(scope) == "/a%0ab?x=%0a"
    # Under a server that gives no raw path, the decoded one is escaped.
    assert request_target({"path": "/a\nb", "query_string": b""}) == "/a\\x0Ab"
    long = request_target({"path": "/", "raw_path": b"/" + b"%0a" * 10_000})
    assert long.endswith("...(cut)") and len(long) < 8300
