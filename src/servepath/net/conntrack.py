"""The connection-tracking table: how full it is, and the packets dropped because it was full.

Every connection through a machine that NATs or filters by state (Docker's published ports,
ufw, a Kubernetes node) takes one entry of netfilter's table. When the namespace holds
``nf_conntrack_max`` entries, a new connection's first packet is dropped (counted as ``drop``
in ``/proc/net/stat/nf_conntrack``) and the kernel logs ``nf_conntrack: table full, dropping
packet``: callers see connects that time out and succeed on a retry, with nothing in any
server's log. The count and the statistics belong to the network namespace; the maximum is
the machine's (read-only inside a namespace), and the kernel's log is the machine's too,
whichever namespace dropped. Parsing is pure; the readers are one file read each and answer
None where the file cannot be read (no conntrack module, no permission).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "TABLE_FULL",
    "ConntrackTable",
    "conntrack_stats",
    "conntrack_table",
    "kernel_log",
    "parse_conntrack_stat",
    "parse_kmsg",
    "table_full_logged",
]

PROC = Path("/proc")
#: The kernel's words when it drops a packet for a full table (net_warn_ratelimited: a
#: burst of drops logs a few lines, then "callbacks suppressed").
TABLE_FULL = "nf_conntrack: table full, dropping packet"
#: Columns of /proc/net/stat/nf_conntrack that are not per-CPU event counts.
_NOT_COUNTS = frozenset({"entries", "chainlength"})


@dataclass(frozen=True)
class ConntrackTable:
    """This namespace's entries against the machine's maximum."""

    count: int
    maximum: int

    @property
    def fill(self) -> float:
        return self.count / self.maximum if self.maximum > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "max": self.maximum, "fill": round(self.fill, 4)}


def parse_conntrack_stat(text: str) -> dict[str, int]:
    """``/proc/net/stat/nf_conntrack`` (a header, then one line of hex counters per CPU) as
    the namespace's totals per event (``drop``, ``insert_failed``, ``early_drop`` ...)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines:
        return {}
    names, totals = lines[0], dict.fromkeys(lines[0], 0)
    for values in lines[1:]:
        for name, value in zip(names, values, strict=False):
            try:
                totals[name] += int(value, 16)
            except ValueError:
                continue
    return {k: v for k, v in totals.items() if k not in _NOT_COUNTS}


def conntrack_table(proc: Path = PROC) -> ConntrackTable | None:
    """nf_conntrack_count (this namespace) and nf_conntrack_max; None without conntrack."""
    base = proc / "sys" / "net" / "netfilter"
    try:
        count = int((base / "nf_conntrack_count").read_text().strip())
        maximum = int((base / "nf_conntrack_max").read_text().strip())
    except (OSError, ValueError):
        return None
    return ConntrackTable(count, maximum)


def conntrack_stats(proc: Path = PROC) -> dict[str, int] | None:
    """This namespace's conntrack event counters; None without conntrack."""
    try:
        text = (proc / "net" / "stat" / "nf_conntrack").read_text()
    except OSError:
        return None
    return parse_conntrack_stat(text) or None


_KMSG = re.compile(r"^\d+,\d+,(\d+),[^;]*;(.*)$")


def parse_kmsg(records: Iterable[str]) -> list[tuple[int, str]]:
    """``/dev/kmsg`` records (``priority,sequence,microseconds,flags;message``) as
    (microseconds since boot, message); continuation lines are left out."""
    found: list[tuple[int, str]] = []
    for record in records:
        match = _KMSG.match(record)
        if match:
            found.append((int(match.group(1)), match.group(2)))
    return found


def table_full_logged(messages: Iterable[tuple[int, str]], since_us: int) -> int:
    """How many times the kernel logged a full conntrack table at or after ``since_us``."""
    return sum(1 for at, text in messages if at >= since_us and TABLE_FULL in text)


def kernel_log(dev: str = "/dev/kmsg", limit: int = 1 << 16) -> list[tuple[int, str]] | None:
    """The kernel's log as it stands (its last ``limit`` records at most), read without
    waiting; None where it cannot be read (``kernel.dmesg_restrict`` and no root)."""
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    records: list[str] = []
    try:
        while len(records) < limit:
            try:
                chunk = os.read(fd, 8192)  # one record per read
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == 32:  # EPIPE: the ring overwrote the record; go on
                    continue
                return None
            if not chunk:
                break
            records.append(chunk.decode("utf-8", "replace"))
    finally:
        os.close(fd)
    return parse_kmsg(records)
