"""Prepare a model in a child process: its conversions and engine race, away from the server.

Loading a model for the first time converts it (ONNX, treelite, servepath's evaluator) and
races the engines: seconds of CPU, parts of it in native code that holds the interpreter
lock for a hundred milliseconds and more. In a server answering requests that is a stall
every request waits out. So a version swapped in at run time is first loaded by a child
process (:func:`prepare_elsewhere`), which writes the conversions and the race's outcome to
the data directory's engine cache and exits; the server's own load then reads them, in
about a tenth of the time and without the long stalls.

The child is also a fence: an artifact that crashes its unpickler, or exhausts memory,
takes down the child and is refused, while the server serves on.

The child runs at a background priority (``nice`` :data:`PREPARE_NICE`): where the server
and the child share a core, the server's requests come first, and the child still makes
progress on a host that is busy for other reasons (at idle priority, ``SCHED_IDLE``, a host
kept busy by anything else starved it for minutes). It dies with the server.

Run as ``python -m servepath.model.prepare PATH DATA_DIR [--probabilities] [--schema FILE]``:
exit 0 when the model loaded and answered its own example; otherwise 1 and one line on
stderr saying why.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from servepath.errors import ModelLoadError
from servepath.process import die_with_parent

__all__ = ["PREPARE_TIMEOUT", "prepare_elsewhere"]

#: Seconds a child may take to prepare a model before it is stopped and the model refused.
PREPARE_TIMEOUT = 600.0
#: The child's nice value: a third of the server's share of a contended core (CFS weights
#: 335 against 1024). At nice 10 (110) a swap under a loaded host took minutes.
PREPARE_NICE = 5


def prepare_elsewhere(
    path: Path,
    data_dir: Path,
    *,
    probabilities: bool = False,
    schema: Path | None = None,
    timeout: float = PREPARE_TIMEOUT,
) -> None:
    """Load ``path`` in a child process so that its conversions and engine race are cached
    in ``data_dir``; raise :class:`ModelLoadError` with the child's reason when it fails."""
    command = [sys.executable, "-m", "servepath.model.prepare", str(path), str(data_dir)]
    if probabilities:
        command.append("--probabilities")
    if schema is not None:
        command += ["--schema", str(schema)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ModelLoadError(str(path), f"not loaded within {timeout:.0f} s") from None
    if done.returncode == 0:
        return
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise ModelLoadError(str(path), f"loading it killed the process ({name})")
    raise ModelLoadError(str(path), lines[-1] if lines else f"exit status {done.returncode}")


def yield_the_cpu() -> None:
    """Lower this process's priority to :data:`PREPARE_NICE` (where it is higher)."""
    with contextlib.suppress(OSError):
        os.nice(max(0, PREPARE_NICE - os.nice(0)))


def main(argv: list[str]) -> int:
    die_with_parent()  # a server gone, however it went, wants no version prepared
    yield_the_cpu()  # first: the imports below are most of the work
    from servepath.model.loaded import engines_dir, load_model

    path, data_dir = Path(argv[0]), Path(argv[1])
    schema = Path(argv[argv.index("--schema") + 1]) if "--schema" in argv else None
    try:
        model = load_model(
            path,
            cache_dir=engines_dir(data_dir),
            schema_path=schema,
            probabilities="--probabilities" in argv,
        )
        model.predict_rows([model.schema.example()])
    except ModelLoadError as exc:
        print(exc.reason, file=sys.stderr)
        return 1
    except MemoryError:
        print("the process ran out of memory loading it", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
