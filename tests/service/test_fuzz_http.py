"""Hypothesis over raw bytes at the HTTP layer, on a real socket to a live server: random
request lines, headers, framings and bodies (valid-looking JSON with mutations among them),
pipelined or alone. Whatever arrives, no answer is a 5xx, the connection answers or closes
cleanly, and the server stays healthy after."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servepath.config import Settings
from servepath.model.loaded import LoadedModel
from tests.service.live import LiveServer, connect, live_server

TIMEOUT = 0.5  # the server's header, body and keep-alive timeouts: an unfinished request
READ = 5.0  # how long the client waits for each answer (the server answers within TIMEOUT)

EXAMPLE = {
    "income": 52000.0,
    "age": 35.0,
    "employment_years": 6.0,
    "loan_amount": 12000.0,
    "term_months": 36.0,
    "credit_score": 700.0,
    "debt_to_income": 0.3,
    "home_ownership": "rent",
    "purpose": "car",
    "open_accounts": 4.0,
    "delinquencies": 0.0,
}


@pytest.fixture(scope="module")
def server(example_model: LoadedModel) -> Iterator[LiveServer]:
    s = Settings(
        store_url="off",
        cache_url="off",
        header_timeout=TIMEOUT,
        body_timeout=TIMEOUT,
        keepalive_timeout=TIMEOUT,
        request_timeout=2.0,
    )
    with live_server(s, example_model) as live:
        yield live


# --- what a request is made of -------------------------------------------------------------


def _one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in ``n`` draws (sampled, not an integer: hypothesis favours the
    boundaries of integer ranges, which would make the rare case common)."""
    return st.sampled_from([False] * (n - 1) + [True])


def _mostly(common: list[bytes], rare: list[bytes], odds: int = 6) -> st.SearchStrategy[bytes]:
    """One of ``common`` most of the time, one of ``rare`` about once in ``odds``: most
    requests get far enough to reach the app, and the rest probe the parser."""
    return _one_in(odds).flatmap(lambda r: st.sampled_from(rare if r else common))


METHODS = _mostly(
    [b"GET", b"POST", b"POST", b"HEAD"],
    [b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT", b"PATCH", b"PROPFIND", b"PRI",
     b"BREW", b"get", b"G\x00T", b""],
)  # fmt: skip
PATHS = _mostly(
    [b"/", b"/decisions", b"/v2/health/live", b"/v2/health/ready", b"/v2/models/example",
     b"/v2/models/example/ready", b"/v2/models/example/infer", b"/metrics", b"/_path"],
    [b"/predict", b"/v2", b"/v2/models/x/versions/1/infer", b"/metrics////", b"/openapi.json",
     b"/docs", b"*", b"http://t/decisions", b"//", b"/%2e%2e/", b"/%ff%00",
     b"/decisions?x=1&x=2", b"/?" + b"a=1&" * 200, b"/decisions/"],
    odds=3,
)  # fmt: skip
ROUTES = [
    (b"POST", b"/decisions"),
    (b"POST", b"/decisions"),
    (b"POST", b"/v2/models/example/infer"),
    (b"GET", b"/"),
    (b"GET", b"/v2/health/live"),
    (b"HEAD", b"/v2/health/ready"),
    (b"GET", b"/metrics"),
]
VERSIONS = _mostly(
    [b"HTTP/1.1"],
    [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.", b"", b"HTTP/1.1 extra", b"http/1.1"],
    odds=8,
)  # fmt: skip
HEADER_NAMES = _mostly(
    [b"Content-Type", b"Connection", b"Upgrade", b"Expect", b"X-Request-ID",
     b"X-Forwarded-For", b"Forwarded", b"Inference-Header-Content-Length",
     b"X-Request-Timeout", b"Accept", b"Cookie"],
    [b"X-\x00", b"Bad Name", b"", b"Content-Length", b"Transfer-Encoding", b"Host"],
    odds=8,
)  # fmt: skip
HEADER_VALUES = _mostly(
    [b"t", b"application/json", b"text/x+json", b"application/vnd.x+json", b"close",
     b"keep-alive", b"Upgrade", b"websocket", b"h2c", b"100-continue", b"0", b"-1",
     b"99999999999999999999", b"1e3", b"", b"a" * 300, b"2.5"],
    [b"a\x00b", b"\xff\xfe", b"chunked", b"a\rb"],
    odds=8,
)  # fmt: skip

ascii_text = st.binary(max_size=40)
headers = st.lists(
    st.tuples(
        HEADER_NAMES,
        _one_in(8).flatmap(lambda r: st.text(max_size=20).map(str.encode) if r else HEADER_VALUES),
    ),
    max_size=4,
)


def _mutate(raw: bytes, data: st.DataObject) -> bytes:
    """One of the ways a JSON document goes wrong on the wire."""
    kind = data.draw(
        st.sampled_from(
            ["none"] * 8 + ["flip", "insert", "delete", "truncate", "duplicate", "nan",
             "deep", "bigint", "surrogate", "bom", "trailing"]
        )
    )  # fmt: skip
    if kind == "none" or not raw:
        return raw
    at = data.draw(st.integers(0, len(raw) - 1))
    if kind == "flip":
        return raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1 :]
    if kind == "insert":
        return raw[:at] + data.draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    if kind == "delete":
        return raw[:at] + raw[at + data.draw(st.integers(1, 8)) :]
    if kind == "truncate":
        return raw[:at]
    if kind == "duplicate":
        return raw.replace(b'"income":', b'"income":1,"income":', 1)
    if kind == "nan":
        return raw.replace(b"52000.0", data.draw(st.sampled_from([b"NaN", b"-Infinity", b"1e999"])))
    if kind == "deep":
        n = data.draw(st.sampled_from([10, 300, 1023, 1025, 5000]))
        return raw.replace(b"52000.0", b"[" * n + b"1" + b"]" * n, 1)
    if kind == "bigint":
        return raw.replace(b"52000.0", b"9" * data.draw(st.sampled_from([20, 400, 4301, 6000])))
    if kind == "surrogate":
        return raw.replace(b'"car"', b'"\\ud800"', 1).replace(b"0.3", b"NaN", 1)
    if kind == "bom":
        return b"\xef\xbb\xbf" + raw
    return raw + data.draw(st.sampled_from([b" ", b"x", b"{}", b"\x00", b"]"]))


#: What a field's value may be replaced by, as raw JSON: the values orjson cannot write
#: (1,000 levels, 5,000 digits, NaN) and the shapes a handler may not expect.
ODD_VALUES = [b"null", b"true", b"5", b"-1", b"1.5", b'""', b'"x"', b"[]", b"{}", b"[1]",
              b'[{"name": 5}]', b'{"a": {"b": 1}}', b"NaN", b"1e999", b"9" * 400,
              b"9" * 4301, b"[" * 1000 + b"]" * 1000, b'{"a":' * 1000 + b"1" + b"}" * 1000,
              b'"' + b"z" * 5000 + b'"', b'"\\ud800"', b'{"k": 1, "k": 2}']  # fmt: skip
_HOLE = "\x00hole"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


def _with_odd_field(doc: dict[str, object], data: st.DataObject) -> bytes:
    """``doc`` with one field, at the top or one level down, set to an odd value."""
    target: dict[str, object] = doc
    inner = [v for v in doc.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
    deeper: bool = data.draw(st.booleans())
    if inner and deeper:
        target = inner[0][0]
    keys = [*target, "outputs", "parameters", "id", "binary_data_size", "datatype", "shape"]
    target[data.draw(st.sampled_from(keys))] = _HOLE
    if data.draw(st.booleans()):
        odd = data.draw(st.sampled_from(ODD_VALUES))
    else:
        odd = orjson.dumps(data.draw(json_values))
    return orjson.dumps(doc).replace(orjson.dumps(_HOLE), odd, 1)


def _v2_doc() -> dict[str, object]:
    return {
        "inputs": [
            {"name": k, "datatype": "BYTES" if isinstance(v, str) else "FP64", "shape": [1],
             "data": [v]}
            for k, v in EXAMPLE.items()
        ]
    }  # fmt: skip


def _body(data: st.DataObject) -> bytes:
    shape = data.draw(
        st.sampled_from(
            ["one", "one", "vertex", "vertex", "v2", "v2", "odd", "odd", "junk", "empty", "json"]
        )
    )
    if shape == "one":
        return _mutate(orjson.dumps(EXAMPLE), data)
    if shape == "vertex":
        n = data.draw(st.integers(0, 3))
        return _mutate(orjson.dumps({"instances": [EXAMPLE] * n}), data)
    if shape == "v2":
        return _mutate(orjson.dumps(_v2_doc()), data)
    if shape == "odd":
        which = data.draw(st.sampled_from(["one", "vertex", "v2"]))
        doc: dict[str, object] = dict(EXAMPLE)
        if which == "vertex":
            doc = {"instances": [dict(EXAMPLE)]}
        elif which == "v2":
            doc = _v2_doc()
        return _with_odd_field(doc, data)
    if shape == "junk":
        return data.draw(st.binary(max_size=200))
    if shape == "json":
        return data.draw(st.from_regex(rb"\A[\[\]{}\",:0-9a-zA-Z\\ .eE+-]{0,80}\Z"))
    return b""


def _request(data: st.DataObject) -> tuple[bytes, bytes]:
    """One request's bytes, and its method (to know whether its answer has a body)."""
    if data.draw(_one_in(10)):
        return data.draw(st.binary(min_size=1, max_size=300)), b""  # no shape at all
    kind = data.draw(st.sampled_from(range(6)))
    if kind < 3:  # a route as it is meant to be called: the body reaches the JSON parser
        method, target = data.draw(st.sampled_from(ROUTES))
    else:
        method = data.draw(METHODS)
        wild = kind == 5
        target = b"/" + data.draw(ascii_text) if wild else data.draw(PATHS)
    version = data.draw(VERSIONS)
    lines = [method + b" " + target + b" " + version]
    if not data.draw(_one_in(8)):
        lines.append(b"Host: t")
    if data.draw(st.booleans()):
        lines.append(b"Content-Type: application/json")
    lines += [name + b": " + value for name, value in data.draw(headers)]
    body = _body(data) if method not in (b"GET", b"HEAD") or data.draw(st.booleans()) else b""
    framing = data.draw(
        st.sampled_from(["length"] * 6 + ["none", "chunked", "short", "long", "both"])
    )
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
    elif framing == "short":  # declares less than it sends: the rest is the next request
        lines.append(b"Content-Length: %d" % max(0, len(body) - 3))
    elif framing == "long":  # declares more: the body stalls until the body timeout
        lines.append(b"Content-Length: %d" % (len(body) + 5))
    elif framing in ("chunked", "both"):
        lines.append(b"Transfer-Encoding: chunked")
        if framing == "both":
            lines.append(b"Content-Length: %d" % len(body))
        size = data.draw(
            st.sampled_from([b"%x" % len(body), b"zz", b"-1", b"%X;ext=1" % len(body)])
        )
        body = (size + b"\r\n" + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    if framing == "none":
        body = b""
    return b"\r\n".join(lines) + b"\r\n\r\n" + body, method


# --- the client side ----------------------------------------------------------------------


def _exchange(port: int, payload: bytes, methods: list[bytes]) -> tuple[bytes, list[int]]:
    """Send; read until every request is answered, the server closes, or READ s pass."""
    out = b""
    with connect(port, timeout=READ) as s:
        with contextlib.suppress(OSError):
            s.sendall(payload)
        with contextlib.suppress(OSError):  # a reset after an answer is a clean enough close
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                _, answered = _parse(out, methods)
                if answered >= len(methods):
                    break
    return out, _parse(out, methods)[0]


def _parse(data: bytes, methods: list[bytes]) -> tuple[list[int], int]:
    """The statuses of the responses in ``data`` (framed by Content-Length, none after HEAD),
    and how many final (not 100) responses are complete."""
    statuses: list[int] = []
    answered = 0
    rest = data
    while rest:
        head, sep, after = rest.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 ") or not sep, data[:300]
        if not sep:
            break
        status = int(head[9:12])
        statuses.append(status)
        rest = after
        if status == 100:
            continue
        match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        method = methods[answered] if answered < len(methods) else b""
        length = int(match.group(1)) if match and method != b"HEAD" else 0
        if len(rest) < length:
            break
        rest = rest[length:]
        answered += 1
    return statuses, answered


def _healthy(server: LiveServer) -> None:
    with connect(server.port) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_bytes_a_caller_sends_get_a_5xx_or_break_the_server(
    server: LiveServer, data: st.DataObject
) -> None:
    requests = [_request(data) for _ in range(data.draw(st.sampled_from([1, 1, 1, 2, 3])))]
    model = f"/v2/models/{server.app.plane.model.name if server.app.plane.model else 'x'}".encode()
    payload = b"".join(raw for raw, _ in requests).replace(b"/v2/models/example", model)
    answer, statuses = _exchange(server.port, payload, [method for _, method in requests])
    assert all(status < 500 for status in statuses), (payload[:400], answer[:400])
    _healthy(server)


def test_after_the_fuzz_the_server_counted_no_5xx_and_serves(server: LiveServer) -> None:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    assert not re.search(r'servepath_http_requests_total\{[^}]*status="5\d\d"\}', text)
    assert httpx.get(server.url + "/", timeout=10).status_code == 200
