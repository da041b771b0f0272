"""API keys, pure: the key file, how a request presents a key, which routes need one."""

from __future__ import annotations

import pytest

from servepath.errors import ConfigError
from servepath.service.auth import (
    AccessPolicy,
    challenge,
    parse_key_file,
    parse_open_routes,
    presented_key,
)

ALICE = "a" * 32
BOB = "b0b-" + "x" * 20


def test_a_key_file_holds_names_and_keys_with_comments_and_blank_lines() -> None:
    ring = parse_key_file(f"# callers\n\nalice:{ALICE}\n  bob : {BOB}  \n")
    assert ring.names == ("alice", "bob")
    assert ring.identify(ALICE).name == "alice"
    assert ring.identify(BOB).name == "bob"
    assert ring.identify(ALICE[:-1]).problem == "invalid"
    assert ring.identify(ALICE + "a").problem == "invalid"
    assert ring.identify("").problem == "missing"
    assert ring.identify(None).problem == "missing"


def test_the_ring_keeps_no_key_in_the_clear() -> None:
    ring = parse_key_file(f"alice:{ALICE}\n")
    assert ALICE not in repr(ring) and ALICE.encode() not in b"".join(d for _, d in ring.keys)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no keys"),
        ("# only a comment\n", "holds no keys"),
        ("alice\n", "line 1: expected NAME:KEY"),
        ("alice:\n", "line 1: expected NAME:KEY"),
        (f"\n\nal ice:{ALICE}\n", "line 3: the name 'al ice'"),
        (f":{ALICE}\n", "the name ''"),
        ("alice:short\n", "is 5 characters; at least 16"),
        (f"alice:{ALICE}\nalice:{BOB}\n", "line 2: the name 'alice' is given twice"),
        (f"alice:{ALICE}\nbob:{ALICE}\n", "line 2: the key of 'bob' is another name's key"),
        ("alice:" + "é" * 20 + "\n", "non-ASCII"),
        ("alice:" + "a b" * 8 + "\n", "spaces"),
    ],
)
def test_a_bad_key_file_names_the_line_and_never_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_key_file(text, "keys.txt")
    assert message in str(info.value)
    for line in text.splitlines():
        secret = line.partition(":")[2].strip()
        if len(secret) >= 5:
            assert secret not in str(info.value)


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ([(b"authorization", f"Bearer {ALICE}".encode())], ALICE),
        ([(b"authorization", f"bearer   {ALICE} ".encode())], ALICE),
        ([(b"x-api-key", ALICE.encode())], ALICE),
        ([(b"x-api-key", BOB.encode()), (b"authorization", f"Bearer {ALICE}".encode())], ALICE),
        ([(b"authorization", b"Basic dXNlcjpwYXNz"), (b"x-api-key", BOB.encode())], BOB),
        ([(b"authorization", b"Bearer ")], None),
        ([(b"x-api-key", b"   ")], None),
        ([], None),
    ],
)
def test_a_key_comes_as_bearer_or_x_api_key(
    headers: list[tuple[bytes, bytes]], key: str | None
) -> None:
    assert presented_key(headers) == key


def test_with_keys_predictions_and_operator_pages_need_one_and_health_stays_open() -> None:
    ring = parse_key_file(f"alice:{ALICE}\n")
    policy = AccessPolicy(ring)
    assert policy.needs_key("/decisions", health=False)
    assert policy.needs_key("/metrics", health=False)
    assert not policy.needs_key("/", health=True)
    locked = AccessPolicy(ring, protect_health=True)
    assert locked.needs_key("/", health=True)
    opened = AccessPolicy(ring, open_routes=parse_open_routes("/metrics, /docs"))
    assert not opened.needs_key("/metrics", health=False)
    assert opened.needs_key("/decisions", health=False)
    assert not AccessPolicy(None).needs_key("/decisions", health=False)
    assert "1 API key (alice)" in policy.describe() and ALICE not in policy.describe()


def test_open_routes_must_be_paths() -> None:
    with pytest.raises(ConfigError, match="is not a path"):
        parse_open_routes("metrics")


def test_the_challenge_says_when_a_key_was_wrong() -> None:
    assert challenge("missing") == b'Bearer realm="servepath"'
    assert b'error="invalid_token"' in challenge("invalid")
