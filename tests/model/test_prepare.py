"""Preparing a version in a child process: the child only takes the CPU the server leaves,
and a load beside the event loop takes the GIL in short turns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from servepath.service.dataplane import LOADING_SWITCH_INTERVAL, brief_turns

#: A child that imports this tree's servepath, as the server's does.
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def idle_in_child(probe: str) -> bool:
    """Run ``probe`` in a child Python, which prints its scheduling policy and nice value:
    whether it ran at idle priority (Linux: SCHED_IDLE; where that is refused, the lowest
    nice instead)."""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=CHILD_ENV
    )
    policy, nice = map(int, out.stdout.split())
    return policy == os.SCHED_IDLE or nice == 19


def test_the_preparing_child_runs_at_idle_priority() -> None:
    probe = (
        "import os\n"
        "from servepath.model.prepare import yield_the_cpu\n"
        "yield_the_cpu()\n"
        "print(os.sched_getscheduler(0), os.nice(0))\n"
    )
    assert idle_in_child(probe)


def test_the_preparing_child_yields_before_it_imports_the_model_libraries(tmp_path: Path) -> None:
    # What the child imports (the model libraries) is most of its work: it must already run
    # at idle priority when the first of them is imported. Run the module as the server
    # runs it, with a hook that notes the priority at that import.
    probe = (
        "import os, runpy, sys\n"
        "seen = []\n"
        "class Finder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'servepath.model.loaded' and not seen:\n"
        "            seen.append((os.sched_getscheduler(0), os.nice(0)))\n"
        "        return None\n"
        "sys.meta_path.insert(0, Finder())\n"
        f"sys.argv = ['prepare', {str(tmp_path / 'missing.joblib')!r}, {str(tmp_path)!r}]\n"
        "try:\n"
        "    runpy.run_module('servepath.model.prepare', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(*seen[0])\n"
    )
    assert idle_in_child(probe)


def test_brief_turns_shortens_the_switch_interval_and_puts_it_back() -> None:
    before = sys.getswitchinterval()
    with brief_turns():
        assert sys.getswitchinterval() == pytest.approx(min(before, LOADING_SWITCH_INTERVAL))
    assert sys.getswitchinterval() == before
    with pytest.raises(RuntimeError), brief_turns():
        raise RuntimeError("the load failed")
    assert sys.getswitchinterval() == before
