"""What a child process of the server does to stay the server's: pure standard library."""

from __future__ import annotations

import contextlib
import signal


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Linux: have the kernel send this process ``sig`` when its parent exits (elsewhere,
    nothing). A worker or a helper left behind by a server that died, however it died,
    would otherwise serve on, or work on, orphaned."""
    import ctypes
    import ctypes.util

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(pr_set_pdeathsig, sig)
