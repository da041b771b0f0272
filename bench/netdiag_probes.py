"""Time servepath's port and trace probes against nc and traceroute on one real topology.

    sudo .venv/bin/python bench/netdiag_probes.py [--ports 1000] [--nc-sample 20] [--json]

Builds (in network namespaces, torn down at the end)

    client ─ r1 ─ r2 ─ r3 ─ r4 ─ server        (5 hops; r2 never answers a traceroute)

then measures, as wall-clock time of the whole command run inside the client namespace:

1. 1,000 ports the server DROPs: `servepath ports` (concurrent) against `nc -zvw1`
   (sequential, one timeout per port: it is timed on --nc-sample ports and extrapolated).
2. a 5-hop trace with the silent hop: `servepath trace` (TCP, UDP, ICMP) against
   `traceroute -n` (UDP) and `traceroute -n -T -p 80`, each with its default waits.
3. the same path with the target dropping the probes (not reached): both give up only
   after every TTL up to --max-hops has timed out.

Only addresses inside the namespaces it creates are contacted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tests.topology.topology import Network, Topology, drop, silent_time_exceeded

from servepath.netdiag.ports import scan_ports

SERVER = "10.9.5.2"
FILTERED_BASE = 20000


def build() -> Topology:
    topo = Topology()
    hosts = ["client", "r1", "r2", "r3", "r4", "server"]
    for router in hosts[1:-1]:
        topo.router(router)
    for index, (a, b) in enumerate(itertools.pairwise(hosts), start=1):
        topo.link(a, f"10.9.{index}.1/24", b, f"10.9.{index}.2/24")
    topo.rule("r2", silent_time_exceeded())
    return topo


def timed(net: Network, argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = net.run("client", argv, check=False, timeout=600)
    return time.perf_counter() - started, proc


def servepath(*args: str) -> list[str]:
    return [sys.executable, "-m", "servepath", *args]


def measure(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, object] = {}
    with build().build() as net:
        startup, _ = timed(net, servepath("--help"))
        results["servepath_startup_s"] = round(startup, 3)
        last = FILTERED_BASE + args.ports - 1
        with net.rule("server", drop(port=f"{FILTERED_BASE}:{last}")):
            elapsed, proc = timed(
                net,
                servepath("ports", SERVER, f"{FILTERED_BASE}-{last}", "--timeout", "1", "--json"),
            )
            states = {entry["state"] for entry in json.loads(proc.stdout)}
            # The same probe in-process: the command's time less the interpreter's start-up.
            scan = net.call("client", scan_ports, SERVER, list(range(FILTERED_BASE, last + 1)))
            results["ports"] = {
                "count": args.ports,
                "servepath_s": round(elapsed, 3),
                "servepath_probe_s": scan.elapsed_s,
                "servepath_states": sorted(states),
            }
            sample_last = FILTERED_BASE + args.nc_sample - 1
            elapsed, proc = timed(net, ["nc", "-zvw1", SERVER, f"{FILTERED_BASE}-{sample_last}"])
            timed_out = proc.stderr.count("timed out")
            results["ports"].update(  # type: ignore[attr-defined]
                {
                    "nc_sample_ports": args.nc_sample,
                    "nc_sample_s": round(elapsed, 3),
                    "nc_sample_timed_out": timed_out,
                    "nc_extrapolated_s": round(elapsed / args.nc_sample * args.ports, 1),
                }
            )
        with net.listen("server", SERVER, [80]):
            traces: dict[str, object] = {}
            for name, argv in {
                "servepath trace (tcp :80)": servepath("trace", SERVER, "-n", "--json"),
                "servepath trace --protocol udp": servepath(
                    "trace", SERVER, "-n", "--protocol", "udp", "--json"
                ),
                "servepath trace --protocol icmp": servepath(
                    "trace", SERVER, "-n", "--protocol", "icmp", "--json"
                ),
                "traceroute -n": ["traceroute", "-n", SERVER],
                "traceroute -n -T -p 80": ["traceroute", "-n", "-T", "-p", "80", SERVER],
            }.items():
                elapsed, proc = timed(net, argv)
                traces[name] = {
                    "s": round(elapsed, 3),
                    "probe_s": _probe_time(proc.stdout),
                    "hops": _hops(proc.stdout),
                }
            results["trace_silent_hop"] = traces
            unreached: dict[str, object] = {}
            hops = str(args.max_hops)
            traceroute_tcp = ["traceroute", "-n", "-T", "-p", "80", "-m", hops, SERVER]
            with net.rule("server", drop(port=80)):
                for name, argv in {
                    f"servepath trace -m {args.max_hops}": servepath(
                        "trace", SERVER, "-n", "-m", str(args.max_hops), "--json"
                    ),
                    f"traceroute -n -T -p 80 -m {args.max_hops}": traceroute_tcp,
                }.items():
                    elapsed, proc = timed(net, argv)
                    unreached[name] = {"s": round(elapsed, 3), "probe_s": _probe_time(proc.stdout)}
            results["trace_target_drops"] = unreached
    return results


def _probe_time(stdout: str) -> float | None:
    if stdout.lstrip().startswith("{"):
        return float(json.loads(stdout)["elapsed_s"])
    return None


def _hops(stdout: str) -> list[str | None]:
    if stdout.lstrip().startswith("{"):
        return [hop["address"] for hop in json.loads(stdout)["hops"]]
    hops: list[str | None] = []
    for line in stdout.splitlines()[1:]:
        fields = [f for f in line.split()[1:] if f.count(".") == 3]
        hops.append(fields[0] if fields else None)
    return hops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--nc-sample", type=int, default=20)
    parser.add_argument("--max-hops", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0 or not all(
        shutil.which(b) for b in ("ip", "iptables", "nc", "traceroute")
    ):
        sys.exit("needs root, iproute2, iptables, nc and traceroute")
    results = measure(args)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    ports = results["ports"]
    print(f"servepath start-up (python -m servepath --help): {results['servepath_startup_s']} s")
    print(f"\n{ports['count']} filtered ports, 1 s timeout")  # type: ignore[index]
    print(
        f"  servepath ports       {ports['servepath_s']:>8} s  "  # type: ignore[index]
        f"(the probe itself: {ports['servepath_probe_s']} s)"  # type: ignore[index]
    )
    print(
        f"  nc -zvw1 (sequential) {ports['nc_extrapolated_s']:>8} s  "  # type: ignore[index]
        f"(extrapolated from {ports['nc_sample_ports']} ports in {ports['nc_sample_s']} s)"  # type: ignore[index]
    )
    print("\n5-hop trace, hop 2 silent, target reached")
    for name, row in results["trace_silent_hop"].items():  # type: ignore[attr-defined]
        hops = " ".join(h or "*" for h in row["hops"])
        probe = f"(probe {row['probe_s']} s)" if row["probe_s"] is not None else ""
        print(f"  {name:<34} {row['s']:>7} s {probe:<16} {hops}")
    print("\nsame path, the target drops the probes (not reached)")
    for name, row in results["trace_target_drops"].items():  # type: ignore[attr-defined]
        probe = f"(probe {row['probe_s']} s)" if row["probe_s"] is not None else ""
        print(f"  {name:<34} {row['s']:>7} s {probe}")


if __name__ == "__main__":
    main()
