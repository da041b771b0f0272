"""Which forward proxy a request to a URL goes through, decided the way httpx and curl do."""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from servepath.config import ProxyEnv
from servepath.errors import EndpointError
from servepath.net.endpoints import parse_host_port


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
    # host:port and [::1]:8080 cover the host whatever the port; what is no endpoint (a CIDR
    # range such as fd00::/8) is read below as it stands
    with contextlib.suppress(EndpointError):
        entry = parse_host_port(entry)[0]
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


def proxy_url(value: str) -> str:
    """A proxy as the variables often spell it (``proxy:3128``) as a URL httpx accepts."""
    value = value.strip()
    return value if "://" in value else "http://" + value


def choose_proxy(url: str, env: ProxyEnv, explicit: str | None = None) -> ProxyChoice:
    """The proxy for ``url``: ``explicit`` wins, then NO_PROXY, then the scheme's variable."""
    if explicit:
        return ProxyChoice(url, proxy_url(explicit), "--proxy")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    scheme = parts.scheme.lower()
    if env.no_proxy:
        for entry in env.no_proxy.split(","):
            if _host_matches(host, entry):
                return ProxyChoice(url, None, f"NO_PROXY entry {entry.strip()!r} matches {host}")
    if scheme == "https" and env.https:
        return ProxyChoice(url, proxy_url(env.https), "HTTPS_PROXY")
    if scheme == "http" and env.http:
        return ProxyChoice(url, proxy_url(env.http), "HTTP_PROXY")
    if env.all:
        return ProxyChoice(url, proxy_url(env.all), "ALL_PROXY")
    return ProxyChoice(url, None, "no proxy variable applies")
