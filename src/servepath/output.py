"""The CLI's output layer: the only place that prints. Tables for people, JSON for tools."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import orjson
from rich.console import Console
from rich.markup import escape


class JSONable(Protocol):
    def to_json(self) -> Any: ...


def to_jsonable(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def dumps(value: Any) -> str:
    return orjson.dumps(
        to_jsonable(value), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str
    ).decode()


@dataclass
class Output:
    """Where a command writes. Tests pass their own streams instead of patching."""

    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)

    def __post_init__(self) -> None:
        self.console = Console(file=self.stdout, highlight=False, soft_wrap=True)
        self.err_console = Console(file=self.stderr, highlight=False, soft_wrap=True)

    def json(self, value: Any) -> None:
        self.stdout.write(dumps(value) + "\n")
        self.stdout.flush()

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)

    def error(self, message: str) -> None:
        # messages carry user input (URLs, paths) that must not be read as markup
        self.err_console.print(f"[bold red]error:[/] {escape(message)}")
