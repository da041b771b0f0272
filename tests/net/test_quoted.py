"""The quoted-string parser that Forwarded and Server-Timing share."""

from __future__ import annotations

import pytest

from servepath.net.quoted import split_outside_quotes, unquote, unterminated


@pytest.mark.parametrize(
    ("text", "sep", "parts"),
    [
        ("a,b", ",", ["a", "b"]),
        ('a="x,y",b', ",", ['a="x,y"', "b"]),
        ('a="x\\",y",b', ",", ['a="x\\",y"', "b"]),
        ('a="open, never closed', ",", ['a="open, never closed']),
        ("", ";", [""]),
        ('for=x;desc="a;b"', ";", ["for=x", 'desc="a;b"']),
    ],
)
def test_a_separator_inside_quotes_never_splits(text: str, sep: str, parts: list[str]) -> None:
    assert split_outside_quotes(text, sep) == parts


def test_unquote_undoes_escapes_and_leaves_bare_tokens_alone() -> None:
    assert unquote(' "a\\"b" ') == 'a"b'
    assert unquote(" token ") == "token"


def test_an_escaped_quote_does_not_close_the_string() -> None:
    assert unterminated('"abc\\"')
    assert not unterminated('"abc\\""')
