"""Reading flag values without pydantic: the CLI's own coercion for the types it uses.

typer (0.29) coerces every value through a pydantic ``TypeAdapter``, which costs a command
the import of pydantic (60-190 ms on these machines) before it does anything. servepath's
flags are strings, numbers with bounds, paths, booleans, choices and lists of these; this
module reads them with the same rules and the same messages, and leaves any other type to
typer.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from typer._click.exceptions import BadParameter
from typer._coercion import RuntimeParam, TypeDescriptor

__all__ = ["light_runtime_param", "lighten"]


@dataclass(frozen=True)
class _Light(RuntimeParam):
    """Coercion of one scalar type (``kind``), or a list of it, with typer's bounds."""

    kind: Any = str
    choices: tuple[Any, ...] = ()
    many: bool = False

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        if self.many:
            items = value if isinstance(value, list | tuple) else [value]
            return [self._one(item, param, ctx) for item in items]
        return self._one(value, param, ctx)

    def _one(self, value: Any, param: Any, ctx: Any) -> Any:
        kind = self.kind
        if self.choices:
            return self._choice(value, param, ctx)
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on", "y", "t"):
                return True
            if text in ("0", "false", "no", "off", "n", "f"):
                return False
            raise BadParameter("Input should be a valid boolean", ctx=ctx, param=param)
        if kind is str:
            return value if isinstance(value, str) else str(value)
        if kind is Path:
            return value if isinstance(value, Path) else Path(value)
        number = self._number(value, param, ctx)
        return self._bounded(number, param, ctx)

    def _number(self, value: Any, param: Any, ctx: Any) -> int | float:
        if self.kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            try:
                return int(str(value).strip())
            except ValueError:
                raise BadParameter(
                    "Input should be a valid integer, unable to parse string as an integer",
                    ctx=ctx,
                    param=param,
                ) from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            number = float(str(value).strip())
        except ValueError:
            raise BadParameter(
                "Input should be a valid number, unable to parse string as a number",
                ctx=ctx,
                param=param,
            ) from None
        if not math.isfinite(number):
            raise BadParameter("Input should be a finite number", ctx=ctx, param=param)
        return number

    def _bounded(self, number: int | float, param: Any, ctx: Any) -> int | float:
        info = self.parameter_info
        low, high = info.min, info.max
        if info.clamp:
            if low is not None and number < low:
                return type(number)(low)
            if high is not None and number > high:
                return type(number)(high)
            return number
        if low is not None and number < low:
            raise BadParameter(
                f"Input should be greater than or equal to {low}", ctx=ctx, param=param
            )
        if high is not None and number > high:
            raise BadParameter(
                f"Input should be less than or equal to {high}", ctx=ctx, param=param
            )
        return number

    def _choice(self, value: Any, param: Any, ctx: Any) -> Any:
        for choice in self.choices:
            if value == choice or str(getattr(choice, "value", choice)) == str(value):
                return choice
        names = ", ".join(repr(str(getattr(c, "value", c))) for c in self.choices)
        raise BadParameter(
            f"Value error, {str(value)!r} is not one of {names}.", ctx=ctx, param=param
        )


def light_runtime_param(descriptor: TypeDescriptor) -> RuntimeParam | None:
    """The light coercion of ``descriptor``'s annotation, or None when typer should do it."""
    annotation: Any = descriptor.annotation
    many = False
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation) or (str,)
        many = True
    info = descriptor.parameter_info
    if getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None:
        return None
    choices: tuple[Any, ...] = ()
    kind: Any = annotation
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        kind = str
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        choices = tuple(annotation)
    elif annotation not in (str, int, float, bool, Path):
        return None
    return _Light(info, descriptor.annotation, kind, choices, many)


def _lighten_param(param: Any) -> None:
    """Give one click parameter the light coercion, where it applies."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "_runtime_param", "") is not None:
        return
    light = light_runtime_param(descriptor)
    if light is not None:
        param._runtime_param = light


def lighten(command: Any) -> Any:
    """``command``'s parameters (and its subcommands') read without pydantic, the help
    option click adds to each of them included."""
    for param in getattr(command, "params", ()):
        _lighten_param(param)
    make_help = getattr(command, "get_help_option", None)
    if make_help is not None and not getattr(make_help, "_light", False):

        def get_help_option(ctx: Any) -> Any:
            option = make_help(ctx)
            if option is not None:
                _lighten_param(option)
            return option

        get_help_option._light = True  # type: ignore[attr-defined]
        command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        lighten(sub)
    return command
