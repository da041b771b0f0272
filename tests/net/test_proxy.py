"""Which forward proxy a URL goes through: the variables, NO_PROXY, and an explicit --proxy."""

from __future__ import annotations

import pytest

from servepath.config import ProxyEnv
from servepath.net.proxy import choose_proxy, proxy_url

BOTH = ProxyEnv(http="http://p:3128", https="http://sp:3128")


def test_no_variables_means_a_direct_connection() -> None:
    choice = choose_proxy("http://api.test/", ProxyEnv())
    assert choice.proxy is None
    assert choice.reason == "no proxy variable applies"


@pytest.mark.parametrize(
    ("url", "proxy", "reason"),
    [
        ("http://api.test/x", "http://p:3128", "HTTP_PROXY"),
        ("https://api.test/x", "http://sp:3128", "HTTPS_PROXY"),
    ],
)
def test_each_scheme_uses_its_own_variable(url: str, proxy: str, reason: str) -> None:
    choice = choose_proxy(url, BOTH)
    assert (choice.proxy, choice.reason) == (proxy, reason)


def test_https_does_not_fall_back_to_http_proxy() -> None:
    # curl and httpx both leave https direct when only HTTP_PROXY is set.
    assert choose_proxy("https://api.test/", ProxyEnv(http="http://p:3128")).proxy is None


def test_all_proxy_covers_both_schemes_when_the_scheme_variable_is_missing() -> None:
    env = ProxyEnv(all="http://any:8080", http="http://p:3128")
    assert choose_proxy("https://api.test/", env).proxy == "http://any:8080"
    assert choose_proxy("http://api.test/", env).proxy == "http://p:3128"


def test_explicit_proxy_wins_over_no_proxy() -> None:
    env = ProxyEnv(http="http://p:3128", no_proxy="*")
    choice = choose_proxy("http://api.test/", env, "http://mine:9000")
    assert (choice.proxy, choice.reason) == ("http://mine:9000", "--proxy")


@pytest.mark.parametrize(
    ("host", "entry"),
    [
        ("api.test", "api.test"),
        ("www.api.test", "api.test"),
        ("www.api.test", ".api.test"),
        ("api.test", ".api.test"),  # curl: a leading dot is ignored
        ("10.1.2.3", "10.0.0.0/8"),
        ("10.1.2.3", "10.1.2.3"),
        ("api.test", "*"),
        ("api.test", "api.test:8080"),
        ("[::1]", "::1"),
        ("[::1]", "[::1]"),
        ("[::1]", "[::1]:8080"),
        ("localhost", "LOCALHOST"),
    ],
)
def test_no_proxy_entries_bypass_the_proxy(host: str, entry: str) -> None:
    env = ProxyEnv(http="http://p:3128", no_proxy=f"other.test, {entry}")
    choice = choose_proxy(f"http://{host}:8080/", env)
    assert choice.proxy is None
    assert entry in choice.reason


@pytest.mark.parametrize(
    ("host", "entry"),
    [
        ("wwwapi.test", "api.test"),  # a suffix of the name, not a domain boundary
        ("api.test.evil", "api.test"),
        ("10.1.2.3", "10.2.0.0/16"),
        ("192.168.1.1", "localhost"),
        ("127.0.0.1", "localhost"),  # names are not resolved to match addresses
    ],
)
def test_no_proxy_entries_that_do_not_match_leave_the_proxy(host: str, entry: str) -> None:
    env = ProxyEnv(http="http://p:3128", no_proxy=entry)
    assert choose_proxy(f"http://{host}/", env).proxy == "http://p:3128"


def test_empty_no_proxy_entries_are_ignored() -> None:
    env = ProxyEnv(http="http://p:3128", no_proxy=",, ,")
    assert choose_proxy("http://api.test/", env).proxy == "http://p:3128"


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("proxy.corp:3128", "http://proxy.corp:3128"),
        ("  http://p:1 ", "http://p:1"),
        ("socks5://p:1080", "socks5://p:1080"),
    ],
)
def test_proxy_values_without_a_scheme_are_http(value: str, url: str) -> None:
    assert proxy_url(value) == url
    assert choose_proxy("http://api.test/", ProxyEnv(http=value)).proxy == url
    assert choose_proxy("http://api.test/", ProxyEnv(), value).proxy == url


def test_choice_serialises_with_its_reason() -> None:
    choice = choose_proxy("http://api.test/", BOTH)
    assert choice.to_json() == {
        "url": "http://api.test/",
        "proxy": "http://p:3128",
        "reason": "HTTP_PROXY",
    }
