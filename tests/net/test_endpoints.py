"""The one host:port parser and formatter: every spelling people write, and every mistake."""

from __future__ import annotations

import pytest

from servepath.errors import EndpointError, UsageError
from servepath.net.endpoints import host_port, parse_host_port, url_host


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api.example.com", ("api.example.com", 8080)),
        ("api.example.com:443", ("api.example.com", 443)),
        ("10.0.0.5:80", ("10.0.0.5", 80)),
        ("10.0.0.5", ("10.0.0.5", 8080)),
        ("::1", ("::1", 8080)),
        ("2001:db8:a:b::1", ("2001:db8:a:b::1", 8080)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("[fe80::1%eth0]:22", ("fe80::1%eth0", 22)),
        ("[::1]", ("::1", 8080)),
        ("  localhost:8000  ", ("localhost", 8000)),
    ],
)
def test_every_spelling_people_write(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, 8080) == expected


def test_urls_are_read_only_when_allowed_and_take_the_scheme_port() -> None:
    assert parse_host_port("https://api.test/decisions", allow_url=True) == ("api.test", 443)
    assert parse_host_port("http://[fd20::5]:8080/x", allow_url=True) == ("fd20::5", 8080)
    assert parse_host_port("http://api.test", allow_url=True) == ("api.test", 80)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no host"),
        (":80", "no host"),
        ("host:", "nothing after ':'"),
        ("host:http", "port 'http' is not a number"),
        ("host:0", "is not a number from 1 to 65535"),
        ("host:65536", "is not a number from 1 to 65535"),
        ("[2001:db8::1", "is not closed"),
        ("[2001:db8::1]8080", "[ADDR]:PORT"),
        ("2001:db8::1:8080:zz", "not an IPv6 address"),
        ("[example.com]:80", "is not an IPv6 address"),
    ],
)
def test_mistakes_name_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(EndpointError) as info:
        parse_host_port(text, 80)
    assert reason in str(info.value)
    assert isinstance(info.value, UsageError) and isinstance(info.value, ValueError)


def test_formatting_brackets_ipv6_once() -> None:
    assert host_port("fd20::5", 8080) == "[fd20::5]:8080"
    assert host_port("[fd20::5]", 8080) == "[fd20::5]:8080"
    assert host_port("10.0.0.5", 80) == "10.0.0.5:80"
    assert host_port("fd20::5", None) == "[fd20::5]"
    assert url_host("api.test") == "api.test"
