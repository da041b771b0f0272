"""What the scaling signal (``servepath_saturation``) costs.

    .venv/bin/python bench/saturation.py [--calls N] [--json]

It costs nothing per admitted request: it is recomputed by the event loop's lag sampler
(every 10 ms, whatever the traffic) and set to 1 by a refusal. Side by side in one run, in
process:

* the lag sampler's tick without the signal (``observe_lag``) and with it (the model queue
  read, ``Admission.saturation``, the gauge written when the value changed), on a building
  with requests in it so that every part of the expected wait is computed;
* the same with the gauge in prometheus_client's multiprocess mode (``--workers``), where a
  write goes to the worker's shared file (each mode in a process of its own: the library
  chooses its value store at import); the value changes at every tick, the worst case (an
  idle or steady signal writes nothing);
* a refusal's count without and with the signal set.

The share of one core the signal takes is the tick's extra cost a hundred times a second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import timeit
from typing import Any


def measure(calls: int, multiprocess: bool) -> dict[str, float]:
    """One mode's timings, in this process."""
    if multiprocess:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="servepath-bench-")
    from servepath.service.admission import Admission, AdmissionLimits
    from servepath.service.metrics import Metrics

    adm = Admission(AdmissionLimits(max_wait=0.05), max_batch=64)
    for rows in (1, 8, 1, 8, 32):
        adm.observe_call(rows, 0.0005 + 0.00005 * rows)
    tickets = [adm.enter(0.0) for _ in range(20)]
    adm.leave(0.01, tickets.pop())
    metrics = Metrics(multiprocess=multiprocess)

    def bare() -> None:
        adm.observe_lag(0.0001)

    flip = [0.0]

    def tick() -> None:
        adm.observe_lag(0.0001)
        adm.observe_queue(40, 10, 8, 2, 0.0)
        # A value that changes every time: every tick writes the gauge.
        flip[0] = 0.5 if flip[0] != 0.5 else 0.25
        metrics.set_saturation(min(adm.saturation(0.02), flip[0]))

    def shed_bare() -> None:
        metrics.count_shed("wait")

    def shed_signal() -> None:
        metrics.count_shed("wait")
        metrics.set_saturation(1.0)

    def ns(fn: Any) -> float:
        return min(timeit.repeat(fn, number=calls, repeat=7)) / calls * 1e9

    return {
        "tick_bare_ns": ns(bare),
        "tick_signal_ns": ns(tick),
        "shed_bare_ns": ns(shed_bare),
        "shed_signal_ns": ns(shed_signal),
    }


def run(calls: int) -> dict[str, Any]:
    """Both modes, each in a process of its own, in one run."""
    results: dict[str, Any] = {}
    for mode in ("single", "multiprocess"):
        child = subprocess.run(
            [sys.executable, __file__, "--calls", str(calls), "--mode", mode],
            check=True,
            capture_output=True,
            text=True,
        )
        results[mode] = json.loads(child.stdout)
    worst = results["multiprocess"]
    extra = worst["tick_signal_ns"] - worst["tick_bare_ns"]
    results["core_share_percent"] = extra * 100 / 1e9 * 100  # 100 ticks a second
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--mode", choices=("single", "multiprocess"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.calls, args.mode == "multiprocess")))
        return 0
    results = run(args.calls)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for mode in ("single", "multiprocess"):
        r = results[mode]
        print(f"{mode}:")
        for bare, signal, what in (
            ("tick_bare_ns", "tick_signal_ns", "lag tick"),
            ("shed_bare_ns", "shed_signal_ns", "refusal counted"),
        ):
            print(
                f"  {what:<16} {r[bare]:7.0f} ns, with the signal {r[signal]:7.0f} ns "
                f"({r[signal] / r[bare]:.2f}x)"
            )
    print(f"share of one core (workers, a write every tick): {results['core_share_percent']:.3f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
