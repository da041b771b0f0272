"""Trusted proxies, decided without a network: who the client is, and what is only claimed.

A catalogue of what peers and headers look like in the wild (RFC 7239 ``Forwarded``, the
de-facto ``X-Forwarded-For``, IPv4-mapped peers of dual-stack sockets, obfuscated and
malformed entries, several headers, chains too long to keep) against one trust list.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from servepath.config import Settings
from servepath.errors import ConfigError
from servepath.net.forwarded import (
    MAX_CLAIMED_BYTES,
    MAX_CLAIMED_HOPS,
    TrustedProxies,
    parse_node,
    resolve_client,
)

TRUSTED = TrustedProxies.parse("127.0.0.1, 10.0.0.0/8, ::1, fd00::/8")
NOBODY = TrustedProxies.parse("")
EVERYONE = TrustedProxies.parse("*")


@dataclass(frozen=True)
class Case:
    name: str
    peer: str | None
    client: str | None
    source: str = "peer"
    claimed: tuple[str, ...] = ()
    forwarded: tuple[str, ...] = ()
    xff: tuple[str, ...] = ()
    trusted: TrustedProxies = TRUSTED
    port: int | None = None
    reason: str = ""
    read_forwarded: bool = True  # --trust-forwarded


CATALOGUE = [
    Case("no headers: the peer", "203.0.113.5", "203.0.113.5", reason="TCP peer"),
    Case("XFF spoof from an untrusted peer stays claimed", "203.0.113.5", "203.0.113.5",
         xff=("198.51.100.7",), claimed=("198.51.100.7",), reason="not a trusted proxy"),
    Case("Forwarded spoof from an untrusted peer stays claimed", "203.0.113.5", "203.0.113.5",
         forwarded=("for=198.51.100.7",), claimed=("198.51.100.7",)),
    Case("default trusts nobody, not even loopback", "127.0.0.1", "127.0.0.1",
         xff=("198.51.100.7",), claimed=("198.51.100.7",), trusted=NOBODY),
    Case("one trusted proxy", "127.0.0.1", "198.51.100.7", "x-forwarded-for",
         xff=("198.51.100.7",), reason="believed for 1 hop"),
    Case("two trusted proxies, walked right to left", "127.0.0.1", "198.51.100.7",
         "x-forwarded-for", xff=("198.51.100.7, 10.0.0.5",), reason="believed for 2 hops"),
    Case("a spoof in front of a trusted proxy's entry stays claimed", "127.0.0.1",
         "198.51.100.7", "x-forwarded-for", xff=("6.6.6.6, 198.51.100.7",),
         claimed=("6.6.6.6",)),
    Case("the walk stops at the first untrusted hop", "10.0.0.9", "198.51.100.7",
         "x-forwarded-for", xff=("10.0.0.1, 198.51.100.7, 10.0.0.5",), claimed=("10.0.0.1",)),
    Case("an IPv4-mapped peer is its IPv4 address", "::ffff:127.0.0.1", "198.51.100.7",
         "x-forwarded-for", xff=("198.51.100.7",)),
    Case("an IPv4-mapped untrusted peer is reported as IPv4", "::ffff:203.0.113.5",
         "203.0.113.5", xff=("198.51.100.7",), claimed=("198.51.100.7",)),
    Case("a mapped allow-list entry means the IPv4 address", "127.0.0.1", "198.51.100.7",
         "x-forwarded-for", xff=("198.51.100.7",),
         trusted=TrustedProxies.parse("::ffff:127.0.0.1")),
    Case("Forwarded: a quoted, bracketed IPv6 with a port", "::1", "2001:db8::1", "forwarded",
         forwarded=('for="[2001:db8::1]:4711"',), port=4711),
    Case("Forwarded: other parameters around for=", "127.0.0.1", "192.0.2.60", "forwarded",
         forwarded=("proto=http;for=192.0.2.60;by=203.0.113.43",)),
    Case("Forwarded: parameter names are case-insensitive", "127.0.0.1", "192.0.2.60",
         "forwarded", forwarded=("For=192.0.2.60",)),
    Case("Forwarded: an IPv4-mapped node is IPv4", "127.0.0.1", "198.51.100.7", "forwarded",
         forwarded=('for="[::ffff:198.51.100.7]"',)),
    Case("Forwarded: an obfuscated port", "127.0.0.1", "192.0.2.43", "forwarded",
         forwarded=('for="192.0.2.43:_abc"',)),
    Case("Forwarded: for=_hidden: the proxy knows no client", "127.0.0.1", None,
         forwarded=("for=_hidden",), claimed=("_hidden",), reason="obfuscated"),
    Case("Forwarded: for=unknown: the proxy knows no client", "127.0.0.1", None,
         forwarded=("for=unknown",), claimed=("unknown",), reason="(unknown)"),
    Case("Forwarded: obfuscated beyond a believed hop: not the inner proxy", "127.0.0.1", None,
         "forwarded", forwarded=("for=_gazonk, for=10.0.0.7",), claimed=("_gazonk",)),
    Case("Forwarded: an element without for=", "127.0.0.1", None,
         forwarded=("proto=https",), claimed=("proto=https",)),
    Case("Forwarded: two for= in one element is malformed", "127.0.0.1", None,
         forwarded=("for=1.2.3.4;for=5.6.7.8",), claimed=("for=1.2.3.4;for=5.6.7.8",),
         reason="malformed"),
    Case("Forwarded: a comma inside quotes does not split", "127.0.0.1", None,
         forwarded=('for="1.2.3.4,5.6.7.8"',), claimed=("1.2.3.4,5.6.7.8",)),
    Case("Forwarded: an unterminated quote is malformed", "127.0.0.1", None,
         forwarded=('for="[2001:db8::1',), claimed=('for="[2001:db8::1',)),
    Case("Forwarded: a pair without = is malformed", "127.0.0.1", None,
         forwarded=("for",), claimed=("for",)),
    Case("Forwarded: several headers are one list", "127.0.0.1", "198.51.100.7", "forwarded",
         forwarded=("for=6.6.6.6", "for=198.51.100.7"), claimed=("6.6.6.6",)),
    Case("XFF: unknown stops the walk", "127.0.0.1", None, xff=("unknown",),
         claimed=("unknown",)),
    Case("XFF: garbage stops the walk", "127.0.0.1", None, xff=("not-an-ip",),
         claimed=("not-an-ip",), reason="malformed"),
    Case("XFF: an IPv4 address with a port", "127.0.0.1", "198.51.100.7", "x-forwarded-for",
         xff=("198.51.100.7:5678",), port=5678),
    Case("XFF: a bare IPv6 address", "::1", "2001:db8::5", "x-forwarded-for",
         xff=("2001:db8::5",)),
    Case("XFF: a bracketed IPv6 address with a port", "::1", "2001:db8::5", "x-forwarded-for",
         xff=("[2001:db8::5]:80",), port=80),
    Case("XFF: an IPv6 zone id is dropped", "::1", "fe80::1", "x-forwarded-for",
         xff=("fe80::1%eth0",)),
    Case("XFF: leading zeros are not an address (octal?)", "127.0.0.1", None,
         xff=("010.0.0.1",), claimed=("010.0.0.1",)),
    Case("XFF: brackets around IPv4 are malformed", "127.0.0.1", None,
         xff=("[198.51.100.7]",), claimed=("[198.51.100.7]",)),
    Case("XFF: a port out of range is malformed", "127.0.0.1", None,
         xff=("198.51.100.7:70000",), claimed=("198.51.100.7:70000",)),
    Case("XFF: empty list elements are ignored", "127.0.0.1", "198.51.100.7",
         "x-forwarded-for", xff=(" , 198.51.100.7, ,",)),
    Case("XFF: several headers are one list, in order", "127.0.0.1", "198.51.100.7",
         "x-forwarded-for", xff=("198.51.100.7", "10.0.0.5")),
    Case("XFF: a trusted IPv6 network", "fd00::1", "198.51.100.7", "x-forwarded-for",
         xff=("198.51.100.7, fd00::2",)),
    Case("every hop trusted: the first one named", "127.0.0.1", "10.0.0.1", "x-forwarded-for",
         xff=("10.0.0.1, 10.0.0.2",), reason="every hop"),
    Case("* trusts every hop", "203.0.113.5", "198.51.100.7", "x-forwarded-for",
         xff=("198.51.100.7, 6.6.6.6",), trusted=EVERYONE),
    Case("both headers from an untrusted peer: both claimed", "203.0.113.5", "203.0.113.5",
         forwarded=("for=192.0.2.1",), xff=("198.51.100.7",),
         claimed=("192.0.2.1", "198.51.100.7")),
    Case("both headers agree: believed", "127.0.0.1", "198.51.100.7", "forwarded",
         forwarded=("for=198.51.100.7",), xff=("198.51.100.7",)),
    Case("both headers disagree: neither believed, the proxy's XFF entry recorded",
         "127.0.0.1", "198.51.100.7", forwarded=("for=6.6.6.6",), xff=("198.51.100.7",),
         claimed=("6.6.6.6", "198.51.100.7"), reason="neither is believed"),
    # nginx passes a caller's Forwarded on and appends the caller to X-Forwarded-For: a
    # caller naming loopback (the proxy's own address) never becomes the proxy or loopback.
    Case("a conflict naming the proxy itself records the caller nginx saw", "127.0.0.1",
         "198.51.100.7", forwarded=("for=127.0.0.1",), xff=("198.51.100.7",),
         claimed=("127.0.0.1", "198.51.100.7"), reason="neither is believed"),
    Case("a conflict whose XFF is all trusted hops records nobody", "127.0.0.1", None,
         forwarded=("for=6.6.6.6",), xff=("127.0.0.1",), claimed=("6.6.6.6", "127.0.0.1")),
    Case("a conflict with a mapped loopback in Forwarded", "::ffff:127.0.0.1",
         "198.51.100.7", forwarded=('for="[::ffff:127.0.0.1]"',), xff=("198.51.100.7",),
         claimed=("[::ffff:127.0.0.1]", "198.51.100.7")),
    Case("Forwarded not read by default: XFF is walked, Forwarded claimed", "127.0.0.1",
         "198.51.100.7", "x-forwarded-for", forwarded=("for=127.0.0.1",),
         xff=("198.51.100.7",), claimed=("127.0.0.1",), read_forwarded=False,
         reason="not read"),
    Case("Forwarded alone, not read: the proxy is not the client", "127.0.0.1", None,
         forwarded=("for=198.51.100.7",), claimed=("198.51.100.7",), read_forwarded=False,
         reason="not read"),
    Case("XFF: every hop claims loopback through a trusted proxy", "127.0.0.1", "127.0.0.2",
         "x-forwarded-for", xff=("127.0.0.2",)),
    Case("no peer (a unix socket) and no trust: nobody", None, None, xff=("198.51.100.7",),
         claimed=("198.51.100.7",)),
]  # fmt: skip


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.name for c in CATALOGUE])
def test_the_client_is_believed_only_through_trusted_proxies(case: Case) -> None:
    trusted = dataclasses.replace(case.trusted, forwarded=case.read_forwarded)
    view = resolve_client(
        case.peer, 40000, forwarded=case.forwarded, x_forwarded_for=case.xff, trusted=trusted
    )
    assert view.client == case.client, view
    assert view.source == case.source, view
    assert view.trusted is (case.source != "peer")
    assert tuple(hop.text for hop in view.claimed) == case.claimed, view
    if case.port is not None:
        assert view.client_port == case.port
    assert case.reason in view.reason
    peer = case.peer and case.peer.removeprefix("::ffff:")
    if not trusted.trusts(peer):
        # A claimed address is never the client unless a trusted hop vouched for it.
        assert view.client == peer and not view.via_proxy
    elif case.forwarded or case.xff:
        # Through a trusted proxy with a chain, the proxy itself is never the client.
        assert view.via_proxy and view.client != peer


def test_the_peer_keeps_its_port_when_no_header_is_believed() -> None:
    view = resolve_client("203.0.113.5", 40000, x_forwarded_for=["1.2.3.4"], trusted=NOBODY)
    assert (view.client, view.client_port) == ("203.0.113.5", 40000)


def test_believed_hops_are_listed_as_proxies_nearest_first() -> None:
    view = resolve_client(
        "127.0.0.1", 1, x_forwarded_for=["198.51.100.7, 10.0.0.5"], trusted=TRUSTED
    )
    assert view.proxies == ("127.0.0.1", "10.0.0.5")


def test_a_long_chain_keeps_the_hops_nearest_the_client_and_says_it_was_cut() -> None:
    chain = ", ".join(f"198.51.{i // 256}.{i % 256}" for i in range(1000))
    view = resolve_client("203.0.113.5", 1, x_forwarded_for=[chain], trusted=TRUSTED)
    assert len(view.claimed) <= MAX_CLAIMED_HOPS
    assert view.claimed[-1].text == "198.51.3.231"  # the last entry of 1,000
    assert view.claimed_hops == 1000 and view.truncated
    text = view.claimed_text()
    assert text is not None and text.startswith("…(+") and len(text.encode()) <= MAX_CLAIMED_BYTES


def test_a_megabyte_header_is_parsed_only_at_its_end() -> None:
    view = resolve_client(
        "127.0.0.1", 1, x_forwarded_for=["6.6.6.6, " * 110_000 + "198.51.100.7"], trusted=TRUSTED
    )
    assert view.client == "198.51.100.7"
    assert view.truncated and view.claimed_hops < 5_000
    text = view.claimed_text()
    assert text is not None and len(text.encode()) <= MAX_CLAIMED_BYTES


def test_long_and_unprintable_entries_are_shown_cut_and_escaped() -> None:
    long = parse_node("x" * 500)
    assert long.kind == "malformed" and len(long.text) == 64 and long.text.endswith("…")
    odd = parse_node("1.2.3.4\x00\x1b[31m")
    assert odd.kind == "malformed" and "\x00" not in odd.text and "\x1b" not in odd.text


def test_claimed_chains_from_both_headers_say_which_is_which() -> None:
    view = resolve_client(
        "203.0.113.5", 1, forwarded=["for=192.0.2.1"], x_forwarded_for=["198.51.100.7"],
        trusted=TRUSTED,
    )  # fmt: skip
    assert view.claimed_text() == "Forwarded: 192.0.2.1; X-Forwarded-For: 198.51.100.7"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "none"),
        ("*", "*"),
        ("127.0.0.1", "127.0.0.1/32"),
        (" 10.0.0.0/8 , fd00::/8 ", "10.0.0.0/8, fd00::/8"),
        ("10.1.2.3/8", "10.0.0.0/8"),  # host bits set: the network, as nginx reads it
        ("[::1]", "::1/128"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
    ],
)
def test_allow_lists_read_addresses_networks_and_star(text: str, expected: str) -> None:
    assert TrustedProxies.parse(text).describe() == expected


@pytest.mark.parametrize("text", ["localhost", "10.0.0.0/33", "1.2.3", "127.0.0.1;rm"])
def test_an_allow_list_entry_that_is_no_address_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="forwarded-allow-ips"):
        TrustedProxies.parse(text)


def test_settings_read_the_allow_list_from_the_environment_and_check_it() -> None:
    settings = Settings.from_env({"SERVEPATH_FORWARDED_ALLOW_IPS": "127.0.0.1,fd00::/8"})
    assert settings.trusted_proxies.trusts("fd00::7")
    assert not settings.trusted_proxies.trusts("203.0.113.5")
    assert not Settings.from_env({}).trusted_proxies.configured
    restored = Settings.deserialize(settings.serialize())  # what a worker process gets
    assert restored.trusted_proxies == settings.trusted_proxies
    with pytest.raises(ConfigError):
        Settings.from_env({"SERVEPATH_FORWARDED_ALLOW_IPS": "nginx"})
