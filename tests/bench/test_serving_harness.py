"""The serving benchmark: wrk output parsing, ratios and targets, request bodies, the Lua
scripts against a real recording server, and one tiny real run against servepath."""

from __future__ import annotations

import contextlib
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from servebench.results import Point, evaluate_targets, find, hit_view, ratio
from servebench.stacks import INCOME_PLACEHOLDER, LUA_DIR, answer_probability, request_body
from servebench.wrk import WrkParseError, WrkResult, busy_share, core_times, parse_wrk

from servepath.model.example import EXAMPLE_APPLICANT
from tests.support import need_binary

REPO = Path(__file__).resolve().parents[2]

WRK_CLEAN = """\
Running 10s test @ http://127.0.0.1:18095/decisions
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    34.36ms   40.12ms 332.53ms   88.10%
    Req/Sec     1.64k   597.71     2.75k    73.81%
  Latency Distribution
     50%  806.00us
     75%   34.36ms
     90%   95.27ms
     99%    1.14s
  14893 requests in 10.01s, 2.96MB read
Requests/sec:   1488.74
Transfer/sec:    302.37KB
""".replace("1.14s\n", "1.14s \n")  # wrk pads one-letter units to the width of two

WRK_ERRORS = """\
Running 1m test @ http://127.0.0.1:18096/decisions
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.37ms    1.35ms  12.01ms   85.52%
    Req/Sec     7.43k     1.48k    9.53k    70.00%
  Latency Distribution
     50%  718.00us
     75%    1.64ms
     90%    3.39ms
     99%    5.98ms
  445900 requests in 1.00m, 437.28MB read
  Socket errors: connect 2, read 5, write 0, timeout 11
  Non-2xx or 3xx responses: 7415
Requests/sec:   7431.53
Transfer/sec:      7.25MB
"""


# --- wrk output --------------------------------------------------------------------------


def test_wrk_latency_percentiles_are_read_in_milliseconds_whatever_their_unit() -> None:
    r = parse_wrk(WRK_CLEAN)
    assert r.p50_ms == pytest.approx(0.806)
    assert r.p90_ms == pytest.approx(95.27)
    assert r.p99_ms == pytest.approx(1140.0)
    assert (r.requests, r.rps) == (14893, 1488.74)
    assert r.duration_s == pytest.approx(10.01)


def test_a_clean_wrk_run_has_no_errors() -> None:
    r = parse_wrk(WRK_CLEAN)
    assert (r.non_2xx, r.socket_errors, r.errors) == (0, 0, 0)


def test_wrk_socket_errors_and_non_2xx_answers_are_all_counted() -> None:
    r = parse_wrk(WRK_ERRORS)
    assert r.socket_errors == 2 + 5 + 0 + 11
    assert r.non_2xx == 7415
    assert r.errors == 7415 + 18
    assert r.duration_s == pytest.approx(60.0)


def test_wrk_output_without_the_latency_distribution_is_rejected() -> None:
    without = "\n".join(ln for ln in WRK_CLEAN.splitlines() if "%  " not in ln)
    with pytest.raises(WrkParseError, match="--latency"):
        parse_wrk(without)


def test_wrk_output_cut_short_is_rejected() -> None:
    with pytest.raises(WrkParseError):
        parse_wrk(WRK_CLEAN.split("  14893 requests")[0])


# --- server core use ---------------------------------------------------------------------

STAT_BEFORE = (
    "cpu  100 0 50 800 10 0 5 0 0 0\ncpu0 60 0 30 400 5 0 3 0 0 0\ncpu1 40 0 20 400 5 0 2 0 0 0\n"
)
STAT_AFTER = (
    "cpu  300 0 90 900 10 0 5 0 0 0\ncpu0 70 0 40 480 5 0 3 0 0 0\ncpu1 230 0 50 420 5 0 2 0 0 0\n"
)


def test_a_cores_busy_share_counts_everything_but_idle_and_iowait() -> None:
    before, after = core_times(1, STAT_BEFORE), core_times(1, STAT_AFTER)
    # cpu1: busy 62 -> 282 (+220), total 467 -> 707 (+240)
    assert busy_share(before, after) == pytest.approx(220 / 240)
    assert core_times(7, STAT_BEFORE) is None
    assert busy_share(None, after) is None


# --- summaries, ratios, targets ----------------------------------------------------------


def run(rps: float, p50: float = 1.0, p99: float = 5.0, errors: int = 0) -> WrkResult:
    return WrkResult(
        requests=int(rps * 10),
        duration_s=10.0,
        rps=rps,
        p50_ms=p50,
        p90_ms=p99 / 2,
        p99_ms=p99,
        non_2xx=errors,
        socket_errors=0,
    )


def point(stack: str, variant: str, c: int, *runs: WrkResult) -> Point:
    return Point(stack, variant, c, tuple(runs))  # type: ignore[arg-type]


def test_a_point_reports_the_median_run_and_the_spread_of_all() -> None:
    p = point("servepath", "miss", 64, run(900, p99=9), run(1000, p99=7), run(1300, p99=8))
    assert p.rps == 1000
    assert (p.rps_min, p.rps_max) == (900, 1300)
    assert p.spread == pytest.approx(0.4)
    assert p.p99_ms == 8


def test_ratios_to_a_missing_or_zero_reference_are_absent_not_infinite() -> None:
    assert ratio(300.0, 100.0) == 3.0
    assert ratio(300.0, None) is None
    assert ratio(300.0, 0.0) is None


def passing_run() -> list[Point]:
    return [
        point("servepath", "miss", 1, run(1500, p50=0.6)),
        point("servepath", "miss", 64, run(6000, p99=20)),
        point("servepath", "hit", 64, run(20000)),
        point("tutorial", "miss", 1, run(100, p50=9)),
        point("tutorial", "miss", 64, run(100, p99=900)),
        point("bentoml", "miss", 64, run(300, p99=580)),
        point("mlserver", "miss", 64, run(250, p99=1100)),
        point("litserve", "miss", 64, run(650, p99=200)),
        point("ceiling", "miss", 64, run(30000)),
        point("ceiling", "hit", 64, run(30000)),
    ]


def test_all_four_targets_pass_when_the_medians_meet_them() -> None:
    checks = evaluate_targets(passing_run(), {})
    assert [c.verdict for c in checks] == ["PASS"] * 4
    assert "60.0×" in checks[0].detail
    assert "LitServe" in checks[1].detail  # the best peer is named
    assert "67%" in checks[3].detail


def test_throughput_alone_does_not_pass_when_p99_is_worse_than_a_peers() -> None:
    points = passing_run()
    points[1] = point("servepath", "miss", 64, run(6000, p99=250))  # LitServe's p99 is 200
    checks = evaluate_targets(points, {})
    assert checks[0].verdict == "PASS"  # the tutorial's p99 is 900
    assert checks[1].verdict == "FAIL"


def test_a_target_met_only_with_errors_fails() -> None:
    points = passing_run()
    points[0] = point("servepath", "miss", 1, run(1500, p50=0.6, errors=3))
    assert evaluate_targets(points, {})[2].verdict == "FAIL"


def test_shortfalls_fail_at_the_edges_of_each_target() -> None:
    points = passing_run()
    points[1] = point("servepath", "miss", 64, run(1299, p99=20))  # < 30× tutorial, < 2× 650
    points[0] = point("servepath", "miss", 1, run(400, p50=2.01))
    points[2] = point("servepath", "hit", 64, run(17999))  # 59.99% of 30,000
    assert [c.verdict for c in evaluate_targets(points, {})] == ["FAIL"] * 4


def test_targets_without_their_reference_are_not_applicable_and_say_why() -> None:
    points = [p for p in passing_run() if p.stack in ("servepath", "ceiling")]
    checks = evaluate_targets(points, {"tutorial": "pip install failed: no matching wheel"})
    assert [c.verdict for c in checks] == ["N/A", "N/A", "PASS", "PASS"]
    assert "pip install failed" in checks[0].detail


def test_stacks_without_a_cache_stand_in_for_hit_with_their_miss_numbers() -> None:
    hits = hit_view(passing_run())
    tutorial = find(hits, "tutorial", "hit", 64)
    assert tutorial is not None and tutorial.measured_as == "miss" and tutorial.rps == 100
    served = find(hits, "servepath", "hit", 64)
    assert served is not None and served.measured_as is None and served.rps == 20000
    assert find(hits, "servepath", "hit", 1) is None  # servepath has a cache: never a stand-in


# --- request bodies ----------------------------------------------------------------------


def fill(template: str, income: str = "61234.5") -> object:
    return json.loads(template.replace(INCOME_PLACEHOLDER, income))


def test_every_format_carries_the_same_applicant_with_a_numeric_income_slot() -> None:
    plain = fill(request_body("instance", EXAMPLE_APPLICANT))
    assert plain == {**EXAMPLE_APPLICANT, "income": 61234.5}
    assert fill(request_body("bentoml", EXAMPLE_APPLICANT)) == {"applicants": [plain]}
    v2 = fill(request_body("v2", EXAMPLE_APPLICANT))
    assert isinstance(v2, dict)
    decoded = {i["name"]: i["data"][0] for i in v2["inputs"]}
    assert decoded == plain
    types = {i["name"]: i["datatype"] for i in v2["inputs"]}
    assert (types["income"], types["age"], types["purpose"]) == ("FP64", "INT64", "BYTES")


def test_the_decided_class_probability_is_read_from_each_answer_shape() -> None:
    assert answer_probability("instance", {"decision": "approve", "probability": 0.92}) == 0.92
    assert answer_probability("bentoml", [{"decision": "approve", "probability": 0.92}]) == 0.92
    v2 = {"outputs": [{"name": "predict_proba", "shape": [1, 2], "data": [0.08, 0.92]}]}
    assert answer_probability("v2", v2) == 0.92


# --- the Lua scripts, driven by real wrk ------------------------------------------------


@contextlib.contextmanager
def recording_server() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/decisions", bodies
    finally:
        server.shutdown()
        server.server_close()


def drive(script: str, url: str, body: Path, offset: int) -> None:
    wrk = need_binary("wrk")
    argv = [wrk, "-t1", "-c2", "-d1s", "-s", str(LUA_DIR / script), url, "--", str(body)]
    subprocess.run([*argv, str(offset)], check=True, capture_output=True, timeout=30)


def test_the_cache_miss_script_never_sends_the_same_applicant_twice(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(request_body("instance", EXAMPLE_APPLICANT))
    with recording_server() as (url, bodies):
        drive("unique.lua", url, body, 10_000_000)
        first_run = len(bodies)
        drive("unique.lua", url, body, 20_000_000)  # a later run, a later offset
    assert first_run > 10
    docs = [json.loads(b) for b in bodies]
    incomes = [d["income"] for d in docs]
    assert len(set(incomes)) == len(incomes)
    assert all(d["purpose"] == "car" for d in docs)
    assert min(incomes) > 30000 + 10_000_000 / 100


def test_the_cache_hit_script_sends_the_example_applicant_every_time(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(request_body("bentoml", EXAMPLE_APPLICANT))
    with recording_server() as (url, bodies):
        drive("fixed.lua", url, body, 0)
    assert len(bodies) > 10 and len(set(bodies)) == 1
    assert json.loads(bodies[0]) == {"applicants": [dict(EXAMPLE_APPLICANT)]}


# --- a tiny real run -------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_a_tiny_run_against_servepath_and_the_ceiling_writes_every_row(
    tmp_path: Path, example_model_path: Path
) -> None:
    need_binary("wrk")
    need_binary("taskset")
    out = tmp_path / "results"
    argv = [sys.executable, str(REPO / "bench" / "serving.py"), "--peers", "servepath,ceiling"]
    argv += ["--duration", "1", "--warmup", "0", "--repeats", "1", "--concurrency", "1,16"]
    argv += ["--model", str(example_model_path), "--out-dir", str(out), "--compute-budget", "0.1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=80, cwd=REPO)
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: a target failed on this machine
    md = (out / "serving.md").read_text()
    miss, hit = md.split("## Cache miss")[1].split("## Cache hit")
    for table in (miss, hit.split("## Compute")[0]):
        for label in ("servepath", "transport ceiling"):
            for c in (1, 16):
                assert f"| {label} | {c} | " in table, (label, c, table)
    assert "| cache-miss c=1 p50 ≤ 2 ms | **" in md
    assert "| cache-hit c=64 throughput ≥ 60% of the transport ceiling | **N/A**" in md
    assert "| compiled | 4,096 |" in md
    assert "p = " in md and "✓" in md  # servepath's answer was checked against scikit-learn
    raw = json.loads((out / "serving.json").read_text())
    assert {(p["stack"], p["variant"], p["concurrency"]) for p in raw["points"]} == {
        (s, v, c) for s in ("servepath", "ceiling") for v in ("miss", "hit") for c in (1, 16)
    }
    assert all(p["runs"][0]["requests"] > 0 and p["errors"] == 0 for p in raw["points"])
    assert (out / "serving.png").stat().st_size > 1000
