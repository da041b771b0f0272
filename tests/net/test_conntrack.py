"""The connection-tracking table's fill and drop counters, and the kernel's log of a full
table: parsed from the kernel's text, and read off this machine's real /proc."""

from __future__ import annotations

import os
from pathlib import Path

from servepath.net.conntrack import (
    TABLE_FULL,
    conntrack_stats,
    conntrack_table,
    kernel_log,
    parse_conntrack_stat,
    parse_kmsg,
    table_full_logged,
)
from tests.support import need

STAT = """entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
0000041a  00000000 00000000 00000000 00000002 00000000 00000000 00000000 00000000 00000001 0000000a 00000000 00000000  00000000 00000000 00000000 00000000
0000041a  00000000 00000000 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000005 00000003 00000000  00000000 00000000 00000000 00000000
"""  # noqa: E501


def test_the_stat_file_sums_each_event_over_the_cpus_and_leaves_the_gauges_out() -> None:
    totals = parse_conntrack_stat(STAT)
    assert totals["drop"] == 15 and totals["insert_failed"] == 1 and totals["early_drop"] == 3
    assert totals["invalid"] == 3
    assert "entries" not in totals  # the same table's size on every line, not an event
    assert parse_conntrack_stat("") == {}


def test_the_kernels_log_records_give_their_time_and_the_full_table_is_counted() -> None:
    records = [
        "4,1201,5000000,-;nf_conntrack: nf_conntrack: table full, dropping packet\n",
        "4,1202,9000000,-;nf_conntrack: nf_conntrack: table full, dropping packet\n",
        "6,1203,9500000,-;eth0: link up\n",
        " SUBSYSTEM=net\n",  # a continuation line
    ]
    messages = parse_kmsg(records)
    assert [at for at, _ in messages] == [5000000, 9000000, 9500000]
    assert table_full_logged(messages, since_us=0) == 2
    assert table_full_logged(messages, since_us=6000000) == 1
    assert TABLE_FULL in messages[0][1]


def test_a_proc_without_conntrack_reads_as_none(tmp_path: Path) -> None:
    assert conntrack_table(tmp_path) is None and conntrack_stats(tmp_path) is None


def test_this_machines_table_and_counters_read_from_the_real_proc() -> None:
    table = conntrack_table()
    need(table is not None, "no connection tracking in this kernel")
    assert table is not None
    assert table.maximum > 0 and 0 <= table.count <= table.maximum * 2
    stats = conntrack_stats()
    assert stats is not None and {"drop", "insert_failed", "early_drop"} <= set(stats)


def test_the_real_kernel_log_is_read_without_waiting() -> None:
    log = kernel_log()
    if log is None:
        assert os.geteuid() != 0 or not os.path.exists("/dev/kmsg")
        return
    assert log and all(at >= 0 for at, _ in log)
    times = [at for at, _ in log]
    assert times == sorted(times)
