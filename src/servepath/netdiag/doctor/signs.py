"""What an HTTP answer says about who sent it: servepath (its headers), a reverse proxy, a
forward proxy's own page, a web server's default site. Pure."""

from __future__ import annotations

import html
import re

from servepath.netdiag.http import HttpReport

__all__ = [
    "FORWARD_PROXIES",
    "REVERSE_PROXIES",
    "forward_proxy_page",
    "from_servepath",
    "header",
    "looks_like_web_server",
    "one_line",
    "reverse_proxy_seen",
    "server_name",
]

FORWARD_PROXIES = ("tinyproxy", "squid", "privoxy", "zscaler", "bluecoat", "mcafee web gateway")
REVERSE_PROXIES = (
    "nginx",
    "envoy",
    "haproxy",
    "traefik",
    "caddy",
    "apache",
    "gfe",
    "istio",
    "cloudflare",
    "awselb",
    "openresty",
)
_WEB_SERVERS = (*REVERSE_PROXIES, "lighttpd", "iis", "litespeed", "tomcat", "jetty", "gunicorn")


def header(report: HttpReport, name: str) -> str | None:
    if not report.hops:
        return None
    for key, value in report.final.headers:
        if key.lower() == name:
            return value
    return None


def from_servepath(report: HttpReport) -> bool:
    """servepath sends a request id and a Server-Timing with a ``total`` on every answer;
    a proxy passes them through, so an answer relayed from servepath counts too."""
    if not report.hops or report.final.status is None:
        return False
    has_total = any(e.name == "total" for e in report.final.server_timing)
    return header(report, "x-request-id") is not None and has_total


def server_name(report: HttpReport) -> str | None:
    return header(report, "server")


def reverse_proxy_seen(report: HttpReport) -> str | None:
    server = (server_name(report) or "").lower()
    for name in REVERSE_PROXIES:
        if name in server:
            return server_name(report)
    via = header(report, "via")
    if via and not any(f in via.lower() for f in FORWARD_PROXIES):
        return via
    return None


def forward_proxy_page(report: HttpReport, proxy: str | None) -> bool:
    """An error page the forward proxy wrote itself, not one it relayed from the service."""
    if proxy is None or not report.hops or report.status is None or from_servepath(report):
        return False
    status = report.status
    if status == 407:
        return True
    if not 400 <= status < 600:
        return False
    server = (server_name(report) or "").lower()
    if any(f in server for f in FORWARD_PROXIES):
        return True
    final = report.final
    names = {k.lower() for k, _ in final.headers}
    # A relayed answer carries the proxy's Via; the proxy's own page does not.
    return "x-squid-error" in names or "proxy-authenticate" in names


def looks_like_web_server(report: HttpReport) -> bool:
    """An answer from a general web server (not an API): its Server header names one, or the
    body is an HTML page, or it says 421 Misdirected Request."""
    if not report.hops or report.status is None:
        return False
    if report.status == 421:
        return True
    server = (server_name(report) or "").lower()
    if any(w in server for w in _WEB_SERVERS):
        return True
    preview = (report.final.body_preview or "").lstrip().lower()
    if report.final.body is not None and not preview:
        preview = report.final.body[:300].decode("utf-8", "replace").lstrip().lower()
    return preview.startswith(("<!doctype html", "<html", "<head", "<body", "<?xml"))


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def one_line(text: str, limit: int = 160) -> str:
    """A body as one readable line: an HTML page by its title or first heading, whitespace
    folded, cut at ``limit``."""
    stripped = text.strip()
    if stripped.lower().startswith(("<!doctype", "<html", "<head", "<body", "<?xml", "<h1")):
        match = _TITLE.search(stripped) or _H1.search(stripped)
        stripped = _TAG.sub(" ", match.group(1) if match else stripped)
        stripped = html.unescape(stripped)
    folded = " ".join(stripped.split())
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"
