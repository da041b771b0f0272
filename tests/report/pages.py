"""Reading a rendered page back as a test reads it: its elements, its inline SVGs as XML, and
the attributes that could make a browser fetch something."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

SVG_NS = "{http://www.w3.org/2000/svg}"
VOID = {"meta", "br", "hr", "img", "input", "link", "source", "wbr", "col", "area", "base"}
#: Attributes that load something, and CSS that does.
FETCHING_ATTRS = {"src", "href", "srcset", "poster", "action", "formaction", "xlink:href", "data"}
FETCHING_CSS = re.compile(r"@import|url\((?!#)")


class Elements(HTMLParser):
    """Every element of a page, checking that each one that opens also closes (in order)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._open: list[str] = []
        self.mismatched: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self._open or self._open[-1] != tag:
            self.mismatched.append(tag)
        else:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def unclosed(self) -> list[str]:
        return list(self._open)


def parse(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    parser.close()
    assert not parser.mismatched and not parser.unclosed, (parser.mismatched, parser.unclosed)
    return parser


def inline_svgs(page: str) -> list[ET.Element]:
    """Each ``<svg>…</svg>`` of the page, parsed as XML (they must be well-formed)."""
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", page, flags=re.S)]


def assert_self_contained(page: str) -> None:
    """Nothing on the page can fetch: no script, no fetching attribute or CSS, a CSP that
    allows no source."""
    elements = parse(page)
    tags = {t for t, _ in elements.tags}
    assert not tags & {"script", "img", "iframe", "link", "object", "embed", "video", "audio"}
    for tag, attrs in elements.tags:
        assert not FETCHING_ATTRS & set(attrs), (tag, attrs)
        assert not FETCHING_CSS.search(attrs.get("style") or ""), (tag, attrs)
    for css in re.findall(r"<style>(.*?)</style>", page, flags=re.S):
        assert not FETCHING_CSS.search(css)
    assert "default-src 'none'" in page
