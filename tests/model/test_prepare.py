"""Preparing a version in a child process: the child only takes the CPU the server leaves,
and a load beside the event loop takes the GIL in short turns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servepath.model.prepare import PREPARE_NICE
from servepath.service.dataplane import LOADING_SWITCH_INTERVAL, brief_turns

#: A child that imports this tree's servepath, as the server's does.
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def child_says(probe: str) -> list[int]:
    """Run ``probe`` in a child Python: the numbers it prints (its scheduling policy and
    nice value first)."""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=CHILD_ENV
    )
    return [int(word) for word in out.stdout.split()]


#: The preparing child's priority: the normal policy, niced (never SCHED_IDLE, which a host
#: busy with anything else starves).
BACKGROUND = [os.SCHED_OTHER, PREPARE_NICE]


def test_the_preparing_child_runs_at_background_priority() -> None:
    probe = (
        "import os\n"
        "from servepath.model.prepare import yield_the_cpu\n"
        "yield_the_cpu()\n"
        "print(os.sched_getscheduler(0), os.nice(0))\n"
    )
    assert child_says(probe) == BACKGROUND


def test_the_preparing_child_yields_before_it_imports_the_model_libraries(tmp_path: Path) -> None:
    # What the child imports (the model libraries) is most of its work: it must already run
    # at its background priority when the first of them is imported. Run the module as the server
    # runs it, with a hook that notes the priority at that import.
    probe = (
        "import ctypes, os, runpy, sys\n"
        "seen = []\n"
        "class Finder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'servepath.model.loaded' and not seen:\n"
        "            sig = ctypes.c_int()\n"
        "            ctypes.CDLL(None).prctl(2, ctypes.byref(sig))  # PR_GET_PDEATHSIG\n"
        "            seen.append((os.sched_getscheduler(0), os.nice(0), sig.value))\n"
        "        return None\n"
        "sys.meta_path.insert(0, Finder())\n"
        f"sys.argv = ['prepare', {str(tmp_path / 'missing.joblib')!r}, {str(tmp_path)!r}]\n"
        "try:\n"
        "    runpy.run_module('servepath.model.prepare', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(*seen[0])\n"
    )
    # Background priority, and SIGTERM when the server goes, before the first heavy import.
    assert child_says(probe) == [*BACKGROUND, signal.SIGTERM]


def test_brief_turns_shortens_the_switch_interval_and_puts_it_back() -> None:
    before = sys.getswitchinterval()
    with brief_turns():
        assert sys.getswitchinterval() == pytest.approx(min(before, LOADING_SWITCH_INTERVAL))
    assert sys.getswitchinterval() == before
    with pytest.raises(RuntimeError), brief_turns():
        raise RuntimeError("the load failed")
    assert sys.getswitchinterval() == before


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_a_child_that_asked_dies_with_its_parent(tmp_path: Path) -> None:
    # A parent that started such a child, killed (SIGKILL: no shutdown of its own runs):
    # the child, asleep for a minute, must not outlive it.
    asked = tmp_path / "asked"
    child = (
        "from servepath.process import die_with_parent; die_with_parent(); "
        f"open({str(asked)!r}, 'w').close(); "
        "import time; time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c",
         f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); "
         "time.sleep(60)"],
        env=CHILD_ENV,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (children := children_of(parent.pid)):
            assert parent.poll() is None and time.monotonic() < deadline, "no child started"
            time.sleep(0.01)
        [pid] = children
        while not asked.exists():  # it says so once it has asked
            assert parent.poll() is None and time.monotonic() < deadline, "the child never asked"
            time.sleep(0.01)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{pid}").exists() and state_of(pid) != "Z":
            assert time.monotonic() < deadline, "the child outlived its parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def state_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
