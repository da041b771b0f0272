"""What the kernel of the server's machine says, as three stages of ``doctor --local``:
the connection-tracking table, the firewall against Docker's published ports, and the
listening socket's accept queue. Pure: the readings come in as values (sampled twice, a
short window apart, by ``local.run_local_doctor``), and each function answers the stage, the
cause it names (or None) and the facts the cause's text needs.

The counters of a namespace are not the port's: ``ListenOverflows`` counts every listener's
drops and the conntrack table every connection. A verdict about the asked port rests on its
own socket's queue (Recv-Q against its backlog); a drop counted elsewhere is said as this
machine's, as a warning, never blamed on the port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servepath.net.conntrack import ConntrackTable
from servepath.net.firewall import Bypass, ChainVerdict
from servepath.net.kernel import ListenCounters, ListenQueue
from servepath.netdiag.doctor.causes import Cause
from servepath.netdiag.doctor.report import Stage

__all__ = [
    "CONNTRACK_FULL_FILL",
    "KernelReadings",
    "KernelSample",
    "StageVerdict",
    "accept_queue_stage",
    "conntrack_stage",
    "firewall_stage",
]

#: The table counts as full from here: entries expire in bursts, and a table at 90% fills
#: with the next burst of new connections.
CONNTRACK_FULL_FILL = 0.9
#: A queue this full (and not yet full) is a warning: the next burst overflows it.
_QUEUE_WARN_FILL = 0.8

StageVerdict = tuple[Stage, Cause | None, dict[str, Any]]


@dataclass(frozen=True)
class KernelSample:
    """The namespace's counters at one instant."""

    at: float  # monotonic seconds
    listen: ListenCounters | None
    conntrack: dict[str, int] | None  # /proc/net/stat/nf_conntrack totals

    def to_json(self) -> dict[str, Any]:
        return {
            "listen_overflows": self.listen.overflows if self.listen else None,
            "listen_drops": self.listen.drops if self.listen else None,
            "conntrack": self.conntrack,
        }


@dataclass(frozen=True)
class KernelReadings:
    """Everything ``doctor --local`` read of the kernel, for the asked port."""

    before: KernelSample
    after: KernelSample
    queues: tuple[ListenQueue, ...] | None = None  # the port's listening sockets; None: unread
    somaxconn: int | None = None
    table: ConntrackTable | None = None
    table_full_logged: int | None = None  # kernel log lines in the horizon; None: unread
    log_horizon_s: float = 300.0
    input: ChainVerdict | None = None  # what INPUT does to the port; None: rules unread
    bypasses: tuple[Bypass, ...] = ()
    firewall_note: str | None = None  # why the rules were not read

    @property
    def window_s(self) -> float:
        return max(0.0, self.after.at - self.before.at)

    def delta(self, name: str) -> int | None:
        """How much a conntrack event counter grew over the window."""
        a, b = self.before.conntrack, self.after.conntrack
        if a is None or b is None or name not in a or name not in b:
            return None
        return max(0, b[name] - a[name])

    @property
    def overflows(self) -> int | None:
        a, b = self.before.listen, self.after.listen
        if a is None or b is None:
            return None
        return max(0, b.overflows - a.overflows)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def accept_queue_stage(port: int, k: KernelReadings, process: str) -> StageVerdict:
    """The port's accept queue: full now (the port's own evidence) fails; drops counted in
    the namespace while the port's queue has room only warn."""
    overflows = k.overflows
    window = f"{k.window_s:.1f} s"
    data: dict[str, Any] = {
        "queues": [q.to_json() for q in k.queues or ()],
        "somaxconn": k.somaxconn,
        "listen_overflows_delta": overflows,
        "window_s": round(k.window_s, 3),
    }
    if not k.queues:
        return (
            Stage("accept queue", "skip", "the listening socket's queue was not read", data),
            None,
            {},
        )
    worst = max(k.queues, key=lambda q: (q.full, q.queued / max(q.backlog, 1)))
    queue_text = f"{worst.queued} of {worst.backlog} connections wait for accept()"
    dropped = overflows or 0
    capped = k.somaxconn is not None and worst.backlog >= k.somaxconn
    suggested = max(4096, worst.backlog * 4)
    ctx: dict[str, Any] = {
        "port": port,
        "process": process,
        "queued": worst.queued,
        "backlog": worst.backlog,
        "suggested_backlog": suggested,
        "capped": capped or (k.somaxconn is not None and suggested > k.somaxconn),
        "somaxconn": k.somaxconn if k.somaxconn is not None else "?",
    }
    if worst.full:
        drops = (
            f"{_plural(dropped, 'handshake')} dropped in {window}"
            if dropped
            else "new handshakes are dropped"
        )
        summary = f"full: {queue_text} on {worst.address}:{port}; {drops}"
        ctx["queue_text"] = f"the accept queue of port {port} is full ({queue_text})"
        ctx["dropped_text"] = (
            f"this network namespace counted {_plural(dropped, 'dropped handshake')} "
            f"(ListenOverflows) in {window}"
            if dropped
            else "every handshake past the queue's bound"
        )
        ctx["slow_text"] = f"{process} takes connections slower than they arrive"
        return Stage("accept queue", "fail", summary, data), "accept_queue_overflow", ctx
    if dropped:
        summary = (
            f"{_plural(dropped, 'handshake')} dropped for a full accept queue in this network "
            f"namespace in {window}, while port {port}'s has room ({queue_text}): another "
            "listener's, or this one's between two reads"
        )
        ctx["queue_text"] = (
            f"a listening socket of this machine overflowed its accept queue; port {port}'s "
            f"has room now ({queue_text})"
        )
        ctx["dropped_text"] = (
            f"{_plural(dropped, 'handshake')} in {window}, counted for the whole network "
            "namespace (ListenOverflows): if no other listener here is busy, it is this one"
        )
        ctx["slow_text"] = (
            f"a server here takes connections slower than they arrive ({process} on port "
            f"{port} between two reads, or another listener)"
        )
        ctx["elsewhere"] = True
        return Stage("accept queue", "warn", summary, data), "accept_queue_overflow", ctx
    if worst.backlog and worst.queued >= _QUEUE_WARN_FILL * worst.backlog:
        summary = f"nearly full: {queue_text}; a burst overflows it"
        return Stage("accept queue", "warn", summary, data), None, {}
    summary = f"{queue_text} (backlog {worst.backlog}); no handshake dropped in {window}"
    return Stage("accept queue", "ok", summary, data), None, {}


def conntrack_stage(port: int, k: KernelReadings, in_container: bool) -> StageVerdict:
    """The connection-tracking table of this namespace: full, or dropping, fails; the
    machine's log of a full table (any namespace's) while this one has room warns."""
    table = k.table
    drop, early, failed = k.delta("drop"), k.delta("early_drop"), k.delta("insert_failed")
    data: dict[str, Any] = {
        "table": table.to_json() if table else None,
        "drop_delta": drop,
        "early_drop_delta": early,
        "insert_failed_delta": failed,
        "table_full_logged": k.table_full_logged,
        "log_horizon_s": k.log_horizon_s,
        "window_s": round(k.window_s, 3),
    }
    if table is None and k.after.conntrack is None:
        note = "no connection tracking here (nothing NATs or filters by connection state)"
        return Stage("conntrack", "skip", note, data), None, {}
    window = f"{k.window_s:.1f} s"
    fill_text = (
        f"{table.count} of {table.maximum} entries ({table.fill:.0%})"
        if table
        else "its size unread"
    )
    ctx: dict[str, Any] = {
        "port": port,
        "fill_text": fill_text,
        # twice the maximum: room for the peak that filled it, at ~300 bytes an entry
        "suggested_max": table.maximum * 2 if table else "<twice the current maximum>",
        "container": in_container,
    }
    dropped = (drop or 0) + (early or 0)
    if (table is not None and table.fill >= CONNTRACK_FULL_FILL) or dropped:
        evidence = []
        if drop:
            evidence.append(f"{_plural(drop, 'new connection')} dropped in {window}")
        if early:
            entries = "entry" if early == 1 else "entries"
            evidence.append(f"{early} {entries} evicted early to make room in {window}")
        if k.table_full_logged:
            evidence.append(
                f"the kernel logged \u201ctable full, dropping packet\u201d "
                f"{_plural(k.table_full_logged, 'time')} in the last {k.log_horizon_s / 60:.0f} min"
            )
        ctx["where"] = "of this network namespace"
        ctx["evidence"] = "; ".join(evidence) or f"it holds {fill_text}"
        summary = f"full: {fill_text}" + (f"; {'; '.join(evidence)}" if evidence else "")
        return Stage("conntrack", "fail", summary, data), "conntrack_full", ctx
    if k.table_full_logged:
        ctx["where"] = (
            "of some network namespace of this machine (the kernel's log does not say which)"
        )
        ctx["evidence"] = (
            f"the kernel logged \u201ctable full, dropping packet\u201d "
            f"{_plural(k.table_full_logged, 'time')} in the last {k.log_horizon_s / 60:.0f} min; "
            f"this namespace's table holds {fill_text} now"
        )
        summary = (
            f"{fill_text}; but the kernel logged a full table "
            f"{_plural(k.table_full_logged, 'time')} in the last "
            f"{k.log_horizon_s / 60:.0f} min (this machine, any namespace)"
        )
        return Stage("conntrack", "warn", summary, data), "conntrack_full", ctx
    if failed:
        summary = (
            f"{fill_text}; {_plural(failed, 'insertion')} failed in {window} (packets of one "
            "new flow racing, as parallel DNS queries over UDP do): not a full table"
        )
        return Stage("conntrack", "warn", summary, data), None, {}
    summary = f"{fill_text}; nothing dropped in {window}"
    return Stage("conntrack", "ok", summary, data), None, {}


def firewall_stage(port: int, k: KernelReadings) -> StageVerdict:
    """The INPUT chain against the port, and Docker's publications of it that pass by."""
    data: dict[str, Any] = {
        "input": k.input.to_json() if k.input else None,
        "bypasses": [b.to_json() for b in k.bypasses],
    }
    if k.input is None:
        return Stage("firewall", "skip", k.firewall_note or "rules not read", data), None, {}
    if k.bypasses:
        b = k.bypasses[0]
        m = b.mapping
        target = f"{m.target_ip}:{m.target_port}" if m.target_ip else str(m.target_port)
        rule = k.input.rule or "the INPUT chain"
        summary = (
            f"Docker publishes tcp:{port} to {target} on every address, past the firewall's "
            f"{k.input.decision} ({rule}): the port is open to other hosts"
        )
        ctx = {
            "port": port,
            "container_port": m.target_port,
            "mapping_text": f"{m.describe()}",
            "rule": rule,
            "decision": k.input.decision,
            "ufw": b.ufw,
        }
        return Stage("firewall", "warn", summary, data), "published_past_firewall", ctx
    if k.input.closed:
        summary = (
            f"the INPUT chain {'drops' if k.input.decision == 'drop' else 'rejects'} new "
            f"connections to tcp:{port} from other hosts ({k.input.rule})"
        )
        return Stage("firewall", "warn", summary, data), None, {}
    opened = f" ({k.input.rule})" if k.input.rule else ""
    return Stage("firewall", "ok", f"INPUT lets tcp:{port} in{opened}", data), None, {}
