"""What hostile input costs the server, beside a normal request, and what the body checks
cost the hot path.

Two parts:

1. **The parse** (no server): ``orjson.loads`` alone against ``parse_json`` (orjson, then
   the duplicate-key proof: a count of ``:`` bytes and a walk over the parsed containers),
   for one instance, 64 and 1,000 instances, and a body whose strings hold colons (which
   adds a second walk that counts them).
2. **The server** (in-process, real sockets): CPU seconds and answer bytes per request for a
   normal prediction, a 1,000-instance batch, and the hostile bodies of issue 17: 1,000
   instances x 100 unknown fields, a 1 MB category value, JSON nested 100k deep, an integer of
   5,000 digits, a duplicate key. The CPU is the whole process's (the client is a raw socket:
   a send and a recv, next to nothing), the median of several rounds.

    .venv/bin/python bench/hostile_input.py
"""

from __future__ import annotations

import contextlib
import re
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Mapping
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.service.live import connect, live_server

from servepath.config import Settings
from servepath.model.example import write_example
from servepath.model.loaded import load_model
from servepath.service.jsonbody import parse_json


def per_call_us(fn: object, n: int) -> float:
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6  # type: ignore[arg-type]


def parse_table(example: Mapping[str, object]) -> None:
    bodies = {
        "1 instance": orjson.dumps(example),
        "64 instances": orjson.dumps({"instances": [example] * 64}),
        "1,000 instances": orjson.dumps({"instances": [example] * 1000}),
        "1,000 instances, colons in strings": orjson.dumps(
            {"instances": [{**example, "purpose": "a:b"}] * 1000}
        ),
    }
    print("| body | bytes | orjson.loads µs | parse_json µs | overhead |")
    print("|---|---:|---:|---:|---:|")
    for name, body in bodies.items():
        n = 20000 if len(body) < 2000 else (300 if len(body) < 20000 else 30)
        base = per_call_us(lambda b=body: orjson.loads(b), n)
        ours = per_call_us(lambda b=body: parse_json(b), n)
        print(f"| {name} | {len(body):,} | {base:.1f} | {ours:.1f} | {ours / base:.2f}x |")


def exchange(port: int, data: bytes) -> bytes:
    with connect(port) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        raw = b""
        with contextlib.suppress(OSError):
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                raw += chunk
                head, sep, body = raw.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length: *(\d+)", head)
                if sep and m and len(body) >= int(m.group(1)):
                    break
    return raw


def post(body: bytes) -> bytes:
    head = (
        "POST /decisions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def server_table(model_path: Path) -> None:
    model = load_model(model_path)
    example = model.schema.example()
    cases = {
        "normal: 1 instance": orjson.dumps(example),
        "normal: 1,000 instances": orjson.dumps({"instances": [example] * 1000}),
        "1,000 instances x 100 unknown fields": orjson.dumps(
            {"instances": [{**example, **{f"u{i}": i for i in range(100)}}] * 1000}
        ),
        "a 1 MB category value": orjson.dumps({**example, "purpose": "x" * 1_000_000}),
        "JSON nested 100k deep": b"[" * 100_000 + b"]" * 100_000,
        "an integer of 5,000 digits": b'{"income": ' + b"9" * 5000 + b"}",
        "a duplicate key (1,000 instances)": orjson.dumps({"instances": [example] * 1000})[:-1]
        + b',"instances":[]}',
    }
    settings = Settings(store_url="off", cache_url="off", max_instances=5000)
    print("| request | body bytes | status | answer bytes | CPU ms (median) |")
    print("|---|---:|---:|---:|---:|")
    with live_server(settings, model) as server:
        for name, body in cases.items():
            data = post(body)
            exchange(server.port, data)  # warm
            cpu = []
            answer = b""
            for _ in range(7):
                t0 = time.process_time()
                answer = exchange(server.port, data)
                cpu.append(time.process_time() - t0)
            status = answer[9:12].decode()
            size = len(answer.partition(b"\r\n\r\n")[2])
            ms = statistics.median(cpu) * 1000
            print(f"| {name} | {len(body):,} | {status} | {size:,} | {ms:.2f} |")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "example.joblib"
        write_example(path)
        example = load_model(path).schema.example()
        print("## parse_json against orjson.loads\n")
        parse_table(example)
        print("\n## per request, on the server\n")
        server_table(path)


if __name__ == "__main__":
    main()
