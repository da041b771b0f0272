"""Which forward proxy a request to a URL goes through, decided the way httpx and curl do."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from servepath.config import ProxyEnv


@dataclass(frozen=True)
class ProxyChoice:
    url: str  # the request URL
    proxy: str | None  # the proxy URL, or None for a direct connection
    reason: str  # why: which variable chose it, or which NO_PROXY entry bypassed it

    def to_json(self) -> dict[str, str | None]:
        return {"url": self.url, "proxy": self.proxy, "reason": self.reason}


def _host_matches(host: str, entry: str) -> bool:
    entry = entry.strip().lower()
    if not entry:
        return False
    if entry == "*":
        return True
    entry = entry.split(":", 1)[0] if entry.count(":") == 1 else entry
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        network = None
    if network is not None:
        try:
            return ipaddress.ip_address(host) in network
        except ValueError:
            return False
    # ".example.com" and "example.com" both cover example.com and its subdomains.
    domain = entry.lstrip(".")
    return host == domain or host.endswith("." + domain)


def choose_proxy(url: str, env: ProxyEnv, explicit: str | None = None) -> ProxyChoice:
    """The proxy for ``url``: ``explicit`` wins, then NO_PROXY, then the scheme's variable."""
    if explicit:
        return ProxyChoice(url, explicit, "--proxy")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    scheme = parts.scheme.lower()
    if env.no_proxy:
        for entry in env.no_proxy.split(","):
            if _host_matches(host, entry):
                return ProxyChoice(url, None, f"NO_PROXY entry {entry.strip()!r} matches {host}")
    if scheme == "https" and env.https:
        return ProxyChoice(url, env.https, "HTTPS_PROXY")
    if scheme == "http" and env.http:
        return ProxyChoice(url, env.http, "HTTP_PROXY")
    if env.all:
        return ProxyChoice(url, env.all, "ALL_PROXY")
    return ProxyChoice(url, None, "no proxy variable applies")
