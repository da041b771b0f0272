"""Hostile input on real sockets: every body, head and media type a caller can send is a 4xx
with the normal JSON error (X-Request-ID, nosniff, counted in the metrics, at most one log
line), or is answered correctly; none is a 5xx, and the server keeps serving."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import httpx
import orjson
import pytest

from servepath.config import Settings
from servepath.errors import ECHO_CHARS, MAX_ERRORS
from servepath.model.loaded import LoadedModel
from tests.service.live import LiveServer, connect, live_server, read_until_closed

HEAD = "POST {path} HTTP/1.1\r\nHost: t\r\n{ctype}Content-Length: {length}\r\n{extra}\r\n"


@pytest.fixture(scope="module")
def server(example_model: LoadedModel) -> Iterator[LiveServer]:
    with live_server(Settings(store_url="off", cache_url="off"), example_model) as live:
        yield live


def request(
    path: str, body: bytes, ctype: str | None = "application/json", extra: str = ""
) -> bytes:
    line = f"Content-Type: {ctype}\r\n" if ctype is not None else ""
    head = HEAD.format(path=path, ctype=line, length=len(body), extra=extra)
    return head.encode() + body


def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a new connection; the one response, read until its length or close."""
    with connect(port) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        raw = b""
        with contextlib.suppress(OSError):
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                raw += chunk
                head, sep, body = raw.partition(b"\r\n\r\n")
                match = re.search(rb"(?im)^content-length: *(\d+)", head)
                if sep and match and len(body) >= int(match.group(1)):
                    break
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), raw[:200]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def requests_counted(server: LiveServer, route: str, status: int) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    pattern = rf'servepath_http_requests_total\{{method="\w+",route="{re.escape(route)}",status="{status}"\}} (\S+)'  # noqa: E501
    return sum(float(v) for v in re.findall(pattern, text))


def still_serves(server: LiveServer) -> None:
    assert httpx.get(server.url + "/", timeout=10).status_code == 200


def example_body(model: LoadedModel) -> bytes:
    return orjson.dumps(model.schema.example())


DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("an array nested 100k deep", DEEP_ARRAY),
        ("an object nested 100k deep", DEEP_OBJECT),
        ("NaN beside 100k levels of nesting", b"[NaN," + DEEP_ARRAY + b"]"),
        ("an integer of 5,000 digits", b'{"income": ' + b"9" * 5000 + b"}"),
        ("an integer of 5,000 digits beside a NaN", b'{"a": NaN, "income": ' + b"9" * 5000 + b"}"),
        ("a lone-surrogate key", b'{"\\ud800": 1}'),
        ("a lone-surrogate key beside a NaN", b'{"\\ud800": NaN}'),
        ("a lone-surrogate value beside a NaN", b'{"purpose": "\\udc00", "income": NaN}'),
        ("a duplicate top-level key", b'{"instances": 5, "instances": []}'),
        ("a duplicate key deep inside", b'{"instances": [{"a": {"b": 1, "b": 2}}]}'),
        ("a duplicate key beside a NaN", b'{"income": NaN, "income": 1}'),
        ("invalid UTF-8", b'{"purpose": "\xff\xfe"}'),
        ("a byte-order mark", b"\xef\xbb\xbf{}"),
        ("NUL bytes", b"\x00" * 64),
        ("a truncated document", b'{"instances": [{"income": 1'),
        ("two documents", b"{} {}"),
    ],
)
@pytest.mark.parametrize("route", ["/decisions", "/v2/models/{name}/infer"])
def test_a_body_no_parser_can_take_is_a_400_with_the_normal_error(
    server: LiveServer,
    example_model: LoadedModel,
    caplog: pytest.LogCaptureFixture,
    name: str,
    body: bytes,
    route: str,
) -> None:
    path = route.replace("{name}", example_model.name)
    before = requests_counted(server, route, 400)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        status, headers, answer = exchange(server.port, request(path, body))
    assert status == 400, (name, answer[:300])
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    assert "error" in orjson.loads(answer)
    assert len(answer) < 1024
    # Counted as the route's 400, not lost; and no traceback in the log.
    assert requests_counted(server, route, 400) == before + 1
    # (the access log, when it is on, is one line for every request: not counted here)
    logged = [r for r in caplog.records if r.name != "uvicorn.access"]
    assert len(logged) <= 1, [r.getMessage() for r in logged]
    assert not any(r.exc_info for r in caplog.records)
    still_serves(server)


def test_a_duplicate_key_is_refused_naming_the_key(server: LiveServer) -> None:
    body = b'{"instances": 5, "instances": [{"income": 1}]}'
    status, _, answer = exchange(server.port, request("/decisions", body))
    assert status == 400
    assert "'instances'" in orjson.loads(answer)["error"]


def test_colons_in_strings_and_keys_are_not_mistaken_for_duplicates(
    server: LiveServer, example_model: LoadedModel
) -> None:
    instance = example_model.schema.example()
    body = orjson.dumps({"instances": [instance], "parameters": {"at": "12:00:00", "a:b": "c:d"}})
    status, _, answer = exchange(server.port, request("/decisions", body))
    assert status == 200, answer


def test_nan_still_names_its_field_with_a_422(
    server: LiveServer, example_model: LoadedModel
) -> None:
    body = example_body(example_model).replace(b'"income":52000.0', b'"income":NaN')
    assert b"NaN" in body
    status, _, answer = exchange(server.port, request("/decisions", body))
    assert status == 422, answer
    assert orjson.loads(answer)["detail"][0]["loc"] == ["income"]


# --- the head: Host, Upgrade, methods, framing --------------------------------------------


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n"),
        ("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("two Host headers on HTTP/1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("a Host with a space and an @", b"GET / HTTP/1.1\r\nHost: a b@c\r\n\r\n"),
        ("a Host with a path", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
        ("liveness without Host", b"GET /v2/health/live HTTP/1.1\r\n\r\n"),
        ("a prediction without Host", b"POST /decisions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"),
    ],
)
def test_a_missing_duplicate_or_invalid_host_is_400_and_closed(
    server: LiveServer, name: str, head: bytes
) -> None:
    with connect(server.port) as s:
        s.sendall(head)
        data = read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 400 "), (name, data[:200])
    assert b"bad_host" in data
    assert b"x-request-id: " in data
    assert b"x-content-type-options: nosniff" in data
    still_serves(server)


def test_http_1_0_without_host_is_still_answered(server: LiveServer) -> None:
    with connect(server.port) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]


@pytest.mark.parametrize(
    "upgrade",
    [
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        "HTTP2-Settings: AAMAAABkAAQAAP__\r\n",
    ],
    ids=["websocket", "h2c"],
)
@pytest.mark.parametrize("path", ["/", "/v2/health/live", "/metrics", "/nope", "/decisions"])
def test_an_upgrade_request_is_answered_as_plain_http_then_closed(
    server: LiveServer, upgrade: str, path: str
) -> None:
    with connect(server.port) as s:
        # A second request behind it: the bytes after an Upgrade belong to another protocol.
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{upgrade}\r\n".encode())
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_until_closed(s)
    status = int(data[9:12])
    assert status in (200, 404, 405), data[:300]
    assert data.count(b"HTTP/1.1 ") == 1, "answered once, as plain HTTP, then closed"
    assert b"x-request-id: " in data
    still_serves(server)


def test_an_upgrade_request_with_a_body_is_refused_not_served_empty(
    server: LiveServer, example_model: LoadedModel
) -> None:
    data = request(
        "/decisions",
        example_body(example_model),
        extra="Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AA\r\n",
    )
    with connect(server.port) as s:
        s.sendall(data)
        answer = read_until_closed(s)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b"upgrade_with_body" in answer


@pytest.mark.parametrize(
    ("name", "data", "statuses"),
    [
        ("TRACE", b"TRACE / HTTP/1.1\r\nHost: t\r\n\r\n", {405}),
        ("CONNECT to a host", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
        ("CONNECT to a path", b"CONNECT / HTTP/1.1\r\nHost: t\r\n\r\n", {405}),
        ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", {400, 404}),
        ("PROPFIND", b"PROPFIND /metrics HTTP/1.1\r\nHost: t\r\n\r\n", {405}),
        ("an unknown method", b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
        ("HEAD on predict", b"HEAD /decisions HTTP/1.1\r\nHost: t\r\n\r\n", {405}),
        ("a NUL in a header", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n", {400}),
        ("a NUL in the path", b"GET /\x00 HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
        ("a CR alone in a header", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n", {400}),
        ("an obs-fold header", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n", {400}),
        ("a space before the colon", b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", {400}),
        ("a 25-digit Content-Length",
         b"POST /decisions HTTP/1.1\r\nHost: t\r\nContent-Length: 9999999999999999999999999\r\n"
         b"\r\n{}", {400}),
        ("a negative Content-Length",
         b"POST /decisions HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n{}", {400}),
        ("a huge but valid Content-Length",
         b"POST /decisions HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n{}", {413}),
        ("two different Content-Lengths",
         b"POST /decisions HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n"
         b"\r\n{}", {400}),
        ("a chunk size that is not hex",
         b"POST /decisions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n"
         b"0\r\n\r\n", {400}),
        ("a chunk size past 64 bits",
         b"POST /decisions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"fffffffffffffffffff\r\n{}\r\n0\r\n\r\n", {400, 413}),
        ("Content-Length and chunked",
         b"POST /decisions HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", {400}),
        ("an unknown transfer coding",
         b"POST /decisions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n{}", {400, 501}),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400}),
        ("HTTP/9.9", b"GET / HTTP/9.9\r\nHost: t\r\n\r\n", {400, 505}),
        ("a full URL with another host", b"GET http://evil.example/ HTTP/1.1\r\nHost: t\r\n\r\n",
         {200, 400, 404}),
        ("a path of dot segments", b"GET /v2/../metrics HTTP/1.1\r\nHost: t\r\n\r\n", {404}),
        ("percent-encoded dot segments", b"GET /%2e%2e/%2fmetrics HTTP/1.1\r\nHost: t\r\n\r\n",
         {404}),
        ("percent-encoded invalid UTF-8", b"GET /%ff%fe%00 HTTP/1.1\r\nHost: t\r\n\r\n", {404}),
        ("a bare percent", b"GET /% HTTP/1.1\r\nHost: t\r\n\r\n", {400, 404}),
        ("1,000 query parameters",
         b"GET /?" + b"&".join(b"a%d=1" % i for i in range(1000)) + b" HTTP/1.1\r\nHost: t\r\n\r\n",
         {200}),
        ("a query past the URL limit",
         b"GET /?" + b"a=1&" * 3000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", {414}),
        ("Expect: 100-continue on a bad body",
         b"POST /decisions HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
         b"\r\n[]", {100}),
        ("Expect: something else", b"GET / HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n",
         {200, 417}),
    ],
)  # fmt: skip
def test_a_hostile_head_is_a_4xx_or_answered_correctly_never_a_5xx(
    server: LiveServer, name: str, data: bytes, statuses: set[int]
) -> None:
    with connect(server.port) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        s.settimeout(5)
        answer = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in answer:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 "), (name, answer[:200])
    status = int(answer[9:12])
    assert status in statuses, (name, answer[:300])
    still_serves(server)


# --- media types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctype", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ('application/json;charset="UTF-8"', 200),
        ("Application/JSON", 200),
        ("application/vnd.api+json", 200),
        (None, 200),
        ("text/x+json", 415),
        ("text/json", 415),
        ("application/json-patch", 415),
        ("application/x-www-form-urlencoded", 415),
        ("*/*", 415),
        ("", 415),
        ("application/+json", 415),
        ("application/json; charset=utf-16", 415),
        ("application/json; charset=latin-1", 415),
        ("json", 415),
        ("x" * 10_000, 415),
    ],
)
def test_media_types_are_strict(
    server: LiveServer, example_model: LoadedModel, ctype: str | None, status: int
) -> None:
    got, _, answer = exchange(
        server.port, request("/decisions", example_body(example_model), ctype)
    )
    assert got == status, (ctype, answer[:200])
    if status == 415:
        assert len(orjson.loads(answer)["error"]) < 200, "the type is echoed only in part"


def test_two_content_type_headers_are_415(server: LiveServer, example_model: LoadedModel) -> None:
    data = request("/decisions", example_body(example_model), extra="Content-Type: text/plain\r\n")
    status, _, _ = exchange(server.port, data)
    assert status == 415


# --- error bodies are bounded ----------------------------------------------------------------


def test_a_thousand_instances_with_a_hundred_unknown_fields_get_a_small_answer(
    server: LiveServer, example_model: LoadedModel
) -> None:
    extra = {f"u{i}": i for i in range(100)}  # 1 MB in all, under the body limit
    instance = {**example_model.schema.example(), **extra}
    body = orjson.dumps({"instances": [instance] * 1000})
    status, _, answer = exchange(server.port, request("/decisions", body))
    assert status == 422
    assert len(answer) < 8_000, len(answer)
    payload = orjson.loads(answer)
    assert len(payload["detail"]) == MAX_ERRORS
    assert payload["more_errors"] == 80  # the rest of the first instance's, counted
    assert payload["validation_stopped"] is True  # the other 999 instances not looked at
    assert "more" in payload["error"]


def test_one_instance_with_100k_unknown_fields_gets_a_small_answer_and_a_count(
    server: LiveServer, example_model: LoadedModel
) -> None:
    instance = {**example_model.schema.example(), **{f"u{i}": 0 for i in range(100_000)}}
    status, _, answer = exchange(server.port, request("/decisions", orjson.dumps(instance)))
    assert status == 422
    payload = orjson.loads(answer)
    assert len(payload["detail"]) == MAX_ERRORS
    assert payload["more_errors"] == 100_000 - MAX_ERRORS
    assert len(answer) < 8_000


@pytest.mark.parametrize("field", ["purpose", "unknown"])
def test_a_megabyte_value_or_key_is_echoed_only_as_a_prefix(
    server: LiveServer, example_model: LoadedModel, field: str
) -> None:
    instance: dict[str, object] = dict(example_model.schema.example())
    if field == "purpose":
        instance["purpose"] = "x" * 1_000_000
    else:
        instance["k" * 1_000_000] = 1
    status, _, answer = exchange(server.port, request("/decisions", orjson.dumps(instance)))
    assert status == 422
    assert len(answer) < 2_000, len(answer)
    assert "x" * ECHO_CHARS in answer.decode() or "k" * ECHO_CHARS in answer.decode()


def test_v2_errors_are_bounded_too(server: LiveServer, example_model: LoadedModel) -> None:
    tensors = [{"name": f"t{i}", "datatype": "X" * 1_000, "data": [1]} for i in range(1_000)]
    path = f"/v2/models/{'m' * 5000}/infer"
    status, _, answer = exchange(server.port, request(path, orjson.dumps({"inputs": tensors})))
    assert status == 404 and len(answer) < 1_000
    path = f"/v2/models/{example_model.name}/infer"
    status, _, answer = exchange(server.port, request(path, orjson.dumps({"inputs": tensors})))
    assert status == 400
    assert len(answer) < 8_000, len(answer)
    assert len(orjson.loads(answer)["detail"]) <= MAX_ERRORS


def test_v2_data_nested_to_orjsons_limit_is_a_4xx_not_a_recursion_error(
    server: LiveServer, example_model: LoadedModel
) -> None:
    data = b"[" * 1000 + b"1" + b"]" * 1000
    body = b'{"inputs":[{"name":"income","datatype":"FP64","data":' + data + b"}]}"
    path = f"/v2/models/{example_model.name}/infer"
    status, _, answer = exchange(server.port, request(path, body))
    assert 400 <= status < 500, answer[:200]


def test_a_404_echoes_only_a_prefix_of_the_path(server: LiveServer) -> None:
    status, _, answer = exchange(
        server.port, b"GET /" + b"p" * 7000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    assert status == 404
    assert len(answer) < 1_000


# --- security headers -------------------------------------------------------------------


def test_every_kind_of_answer_says_nosniff(server: LiveServer, example_model: LoadedModel) -> None:
    answers = [
        exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"),  # the app
        exchange(server.port, b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n"),  # fast path
        exchange(server.port, b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"),  # 404
        exchange(server.port, request("/decisions", b"{")),  # 400 from the app
        exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\nnonsense\r\n\r\n"),  # the protocol
        exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"),
        exchange(server.port, b"GET /docs HTTP/1.1\r\nHost: t\r\n\r\n"),
    ]
    for status, headers, _ in answers:
        assert headers.get("x-content-type-options") == "nosniff", (status, headers)


def test_the_docs_page_carries_a_csp_that_allows_only_its_own_assets(server: LiveServer) -> None:
    r = httpx.get(server.url + "/docs", timeout=10)
    assert r.headers["content-type"].startswith("text/html")
    csp = dict(
        part.strip().split(" ", 1) for part in r.headers["content-security-policy"].split(";")
    )
    assert csp["default-src"] == "'none'"
    assert csp["frame-ancestors"] == "'none'"
    for source in csp["script-src"].split():
        # The page's own scripts (its origin, or an inline one by hash): nothing else runs.
        assert source == "'self'" or source.startswith(("'sha256-", "https://")), source
    assert csp["connect-src"] == "'self'"  # /openapi.json


def test_json_answers_carry_no_csp(server: LiveServer) -> None:
    r = httpx.get(server.url + "/", timeout=10)
    assert "content-security-policy" not in r.headers


@pytest.mark.parametrize(
    "shape",
    [
        b"[" + b",".join([b"9223372036854775807"] * 600) + b"]",  # a product of 11,000 digits
        b"[-1]",
        b"[99999999999, 0]",
    ],
    ids=["huge-product", "negative", "zero"],
)
def test_a_v2_shape_whose_product_cannot_be_printed_is_a_400(
    server: LiveServer, example_model: LoadedModel, shape: bytes
) -> None:
    body = b'{"inputs":[{"name":"income","datatype":"FP64","shape":' + shape + b',"data":[1]}]}'
    path = f"/v2/models/{example_model.name}/infer"
    status, _, answer = exchange(server.port, request(path, body))
    assert status == 400, answer[:300]
    assert len(answer) < 4_000
