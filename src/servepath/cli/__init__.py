"""`servepath` command line: parse, call a typed function, render."""

from __future__ import annotations

import importlib
import pkgutil

from servepath.cli._app import app

__all__ = ["app", "main"]

# Every public module of this package registers its subcommands on import.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")


def main() -> None:
    app()
