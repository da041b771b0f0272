"""`servepath` command line: parse, call a typed function, render.

Commands are imported when they run (see :mod:`servepath.cli._app`), so importing this
package, or asking for ``--help``, loads no probe, no HTTP client and no model library.
"""

from __future__ import annotations

from servepath.cli._app import COMMANDS, app

__all__ = ["COMMANDS", "app", "main"]


def main() -> None:
    app(prog_name="servepath")
