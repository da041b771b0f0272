"""The JSON body's parse and media types, pure: one unambiguous value or a RequestError."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servepath.errors import DuplicateKey, MalformedJSON, RequestError, UnsupportedMediaType
from servepath.service.jsonbody import check_json_media_type, parse_json
from servepath.service.security import csp_for_html


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"a": 1, "a": 2}', "a"),
        (b'{"instances": 5, "instances": [1]}', "instances"),
        (b'[{"x": {"y": [{"z": 1, "z": 1}]}}]', "z"),
        (b'{"a": NaN, "a": 1}', "a"),
        (b'{"\\u003a": 1, "k": 1, "k": 2}', "k"),  # an escaped colon cannot hide one
        (b'{"t": "1:2:3", "k": 1, "k": 2}', "k"),
        (b'{"a" : 1 , "a" : 1}', "a"),
        (b'{"\\u0061": 1, "a": 2}', "a"),  # the same key spelled two ways
    ],
)
def test_a_duplicate_key_anywhere_is_refused_naming_it(body: bytes, key: str) -> None:
    with pytest.raises(DuplicateKey) as caught:
        parse_json(body)
    assert caught.value.key == key


@pytest.mark.parametrize(
    "body",
    [
        b'{"at": "12:00:00", "url": "http://x:1/", "a:b": {"c:d": "e:f"}}',
        b'{"a": {"a": {"a": 1}}, "b": [{"a": 1}, {"a": 2}]}',
        b'{"\\u003a": ":"}',
        b"[]",
        b'"text: with a colon"',
    ],
)
def test_colons_in_strings_and_repeated_keys_in_different_objects_are_fine(body: bytes) -> None:
    assert parse_json(body) == json.loads(body)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b"[NaN," + b"[" * 100_000 + b"]" * 100_001,
        b"9" * 5000,
        b'{"a": NaN, "b": ' + b"9" * 5000 + b"}",
        b'{"\\ud800": NaN}',
        b'{"a": ["\\udfff"], "b": Infinity}',
        b'{"\\ud800": 1}',
        b"\xff",
        b"",
        b"   ",
        b"{} {}",
        b"NaNx",
    ],
)
def test_what_no_parser_can_take_is_a_request_error(body: bytes) -> None:
    with pytest.raises(MalformedJSON):
        parse_json(body)


def test_nan_and_infinity_still_parse_so_that_validation_can_name_the_field() -> None:
    value = parse_json(b'{"a": NaN, "b": -Infinity, "c": 1e999}')
    assert math.isnan(value["a"]) and value["b"] == -math.inf and value["c"] == math.inf


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_any_document_without_duplicates_parses_to_itself(value: Any) -> None:
    body = orjson.dumps(value)
    assert parse_json(body) == orjson.loads(body)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_any_bytes_parse_or_raise_a_request_error_only(raw: bytes) -> None:
    with contextlib.suppress(RequestError):
        parse_json(raw)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON;CHARSET=UTF-8",
        'application/json; charset="utf-8"',
        "application/problem+json",
        "application/vnd.api+json; charset=utf-8",
    ],
)
def test_json_media_types_are_accepted(value: str | None) -> None:
    check_json_media_type(value)


@pytest.mark.parametrize(
    "value",
    [
        "text/x+json",
        "text/json",
        "*/*",
        "",
        "application/+json",
        "application/json+xml",
        "application/jsonx",
        "application/json; charset=iso-8859-1",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/json, text/plain",
    ],
)
def test_other_media_types_are_415(value: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        check_json_media_type(value)


def test_the_csp_names_the_pages_script_origins_and_hashes_its_inline_script() -> None:
    html = (
        '<link rel="stylesheet" href="/static/ui.css">'
        '<script src="https://cdn.example/ui.js"></script><script>go();</script>'
    )
    csp = csp_for_html(html)
    assert "script-src https://cdn.example 'sha256-" in csp
    assert "style-src 'self'" in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp


def test_a_page_without_scripts_may_run_none() -> None:
    assert "script-src 'none'" in csp_for_html("<p>hello</p>")
