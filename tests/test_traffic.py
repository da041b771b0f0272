"""The synthetic-traffic mark: what the server makes of an ``X-Servepath-Traffic`` header
(a closed vocabulary, whatever a caller sends), and that the client tools send it."""

from __future__ import annotations

from pathlib import Path

import pytest

from servepath.load.locust import LocustScenario, write_locustfile
from servepath.netdiag.doctor.observe import DOCTOR_MARK
from servepath.service.request import Head
from servepath.traffic import TRAFFIC_HEADER, TRAFFIC_KINDS, traffic_kind, traffic_of


@pytest.mark.parametrize("kind", TRAFFIC_KINDS)
def test_each_known_word_is_kept_in_any_case(kind: str) -> None:
    assert traffic_of(kind.encode()) == kind
    assert traffic_of(kind.upper().encode()) == kind


@pytest.mark.parametrize(
    "value",
    [
        b"x" * 8000,  # long
        b"doctor\x00\x01\x1b[31m",  # control bytes after a known word
        b"doctor, load",  # two words
        b"synthetic-monitor-7",  # an unknown word
        b"\xff\xfe",  # not text
        b"",
    ],
)
def test_any_other_value_is_other(value: bytes) -> None:
    assert traffic_of(value) == "other"


def test_the_head_reads_the_header_once_and_the_first_value_wins() -> None:
    head = Head.of([(b"x-servepath-traffic", b"LOAD"), (b"x-servepath-traffic", b"doctor")])
    assert head.traffic == "load"
    assert Head.of([(b"content-length", b"2")]).traffic is None
    assert Head.of([(b"x-servepath-traffic", b"\x00" * 100)]).traffic == "other"


def test_a_stored_value_outside_the_vocabulary_reads_as_other() -> None:
    assert traffic_kind(None) is None
    assert traffic_kind("doctor") == "doctor"
    assert traffic_kind("written by hand") == "other"


def test_the_doctor_marks_its_requests() -> None:
    assert (TRAFFIC_HEADER, "doctor") in DOCTOR_MARK


def test_a_written_locustfile_marks_its_requests_as_load(tmp_path: Path) -> None:
    scenario = LocustScenario("http://127.0.0.1:8080", "/decisions", ({"age": 38},))
    [locustfile, *_] = write_locustfile(scenario, tmp_path / "locustfile.py")
    assert f'"{TRAFFIC_HEADER}": "load"' in locustfile.read_text()
