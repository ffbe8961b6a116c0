"""Recipe step arguments declared once (:class:`Arg`, after Olive's PassConfigParam): the parser, the usage text and
the help of ``python -m optim list`` are all generated from the declarations, so they cannot disagree.

A recipe writes arguments as ``key=value``; an argument declared ``positional`` may also be written bare, in order
(``prune(0.5)``, ``ptq(ort)``), and a bare word that is one of a positional argument's choices goes to that argument
wherever it stands (``compile(bf16,max-autotune)``). A ``flag`` is a bool written bare: ``bf16``, ``no-freezing``.
Only the arguments written end up in the parsed values: each step applies its own defaults, so a variant's manifest
records what its recipe said.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from data.errors import InputError

_BOOLS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


@dataclass(frozen=True)
class Arg:
    """One typed argument of a recipe step, with a one-line description."""

    name: str  # the keyword the step's builder takes
    type: type = str
    default: Any = None  # what the builder uses when the recipe leaves it out (shown by ``python -m optim list``)
    help: str = ""
    choices: tuple[str, ...] = ()
    positional: bool = False
    flag: bool = False
    required: bool = False
    positive: bool = False
    check: Callable[[Any], Any] | None = None  # raises InputError naming the argument when the value is wrong
    key: str = ""  # how recipes spell it when that is not ``name`` (``prune(0.5,finetune=2)``)

    @property
    def spelling(self) -> str:
        return self.key or self.name

    @property
    def token(self) -> str:
        return self.spelling.replace("_", "-")

    def metavar(self) -> str:
        if self.choices:
            return "|".join(self.choices)
        if self.type is bool:
            return "1|0"
        if self.positional:
            return self.spelling.upper()
        return {int: "N", float: "F"}.get(self.type, self.spelling.upper())

    def usage(self) -> str:
        if self.flag:
            return self.token if self.default is not None else f"{self.token}|no-{self.token}"
        return self.metavar() if self.positional else f"{self.spelling}={self.metavar()}"

    def default_for(self, device: str) -> Any:
        """The default on ``device`` (a default may depend on it: ``ptq``'s backend)."""
        return self.default(device) if callable(self.default) else self.default

    def describe(self) -> str:
        default = "" if self.default is None or callable(self.default) else f" (default {self.default})"
        return f"{self.usage()}: {self.help}{default}"

    def convert(self, step: str, value: Any) -> Any:
        """The typed value of ``value`` as the recipe wrote it, checked."""
        if isinstance(value, bool):
            typed = value
        elif self.type is bool:
            if value.lower() not in _BOOLS:
                raise InputError(f"{step} argument {self.spelling} must be 1 or 0, got {value!r}")
            typed = _BOOLS[value.lower()]
        elif self.type in (int, float):
            try:
                typed = self.type(value)
            except ValueError:
                what = "an integer" if self.type is int else "a number"
                raise InputError(f"{step} argument {self.spelling} must be {what}, got {value!r}") from None
        else:
            typed = value
        if self.choices and typed not in self.choices:
            raise InputError(f"unknown {step} {self.spelling} {typed!r}; choose one of: {', '.join(self.choices)}")
        if self.positive and not typed > 0:
            raise InputError(f"{step} {self.spelling} must be positive, got {typed}")
        if self.check is not None:
            self.check(typed)
        return typed


def _keyword(args: Sequence[Arg], key: str) -> Arg | None:
    wanted = key.replace("-", "_")
    return next((a for a in args if wanted in (a.name, a.spelling.replace("-", "_"))), None)


def _bare(step: str, token: str, args: Sequence[Arg], values: dict[str, Any]) -> tuple[Arg, Any]:
    """The argument a bare word belongs to: a flag, a positional argument's choice, else the next positional one."""
    for arg in args:
        if arg.flag and token in (arg.token, f"no-{arg.token}"):
            return arg, token == arg.token
    for arg in args:
        if arg.positional and token in arg.choices:
            return arg, token
    for arg in args:
        if arg.positional and arg.name not in values:
            return arg, token
    raise InputError(f"write key=value for {token!r}: {step} takes no more bare arguments")


def parse_values(step: str, raw: Sequence[str], args: Sequence[Arg]) -> dict[str, Any]:
    """The arguments ``raw`` (as written between the parentheses) gives, typed and checked against ``args``."""
    if raw and not args:
        raise InputError(f"recipe step {step!r} takes no arguments, got ({', '.join(raw)})")
    values: dict[str, Any] = {}
    written: dict[str, str] = {}
    for text in raw:
        key, sep, value = (part.strip() for part in text.partition("="))
        if sep:
            arg = _keyword(args, key)
            if arg is None:
                known = ", ".join(a.spelling for a in args if not (a.positional or a.flag))
                raise InputError(f"unknown {step} argument {key!r}; known: {known}")
        else:
            arg, value = _bare(step, text.strip(), args, values)
        if arg.name in values:
            raise InputError(f"{step} {arg.spelling} given twice ({written[arg.name]}, {text.strip()})")
        values[arg.name], written[arg.name] = arg.convert(step, value), text.strip()
    for arg in args:
        if arg.required and arg.name not in values:
            raise InputError(f"{step} needs a {arg.spelling} ({arg.help})")
    return values


def add_options(parser: Any, args: Sequence[Arg]) -> None:
    """A step's arguments as the options of its producer command (``prune(finetune=2)`` is ``--finetune-epochs 2``);
    the step's own checks judge the values, as they judge a recipe's."""
    for arg in args:
        option = "--" + arg.name.replace("_", "-")
        shown = f"{arg.help}: {arg.metavar()}" if arg.choices else arg.help
        shown += "" if arg.default is None or arg.type is bool else f" (default {arg.default})"
        if arg.type is bool:
            parser.add_argument(option, action=argparse.BooleanOptionalAction, default=arg.default, help=shown)
        else:
            parser.add_argument(option, type=arg.type, default=arg.default, required=arg.required, help=shown)


def values_of(options: Any, args: Sequence[Arg]) -> dict[str, Any]:
    """The parsed command-line options that are ``args``, by argument name."""
    return {arg.name: getattr(options, arg.name) for arg in args}


def arg_texts(args: Sequence[Arg], values: dict[str, Any]) -> list[str]:
    """How a recipe writes ``values``, leaving out defaults: ``prune(0.5)``, not ``prune(0.5,steps=1)``."""
    out = []
    for arg in args:
        value = values.get(arg.name, arg.default)
        if value is None or value == arg.default:
            continue
        text = f"{value:g}" if isinstance(value, float) else str(int(value) if isinstance(value, bool) else value)
        if arg.flag:
            text = arg.token if value else f"no-{arg.token}"
        out.append(text if arg.positional or arg.flag else f"{arg.spelling}={text}")
    return out


def step_text(step: str, args: Sequence[Arg], values: dict[str, Any]) -> str:
    """The recipe text of a step with ``values`` (the variant's name)."""
    texts = arg_texts(args, values)
    return f"{step}({','.join(texts)})" if texts else step


def usage_of(step: str, args: Sequence[Arg]) -> str:
    """``prune(RATIO[,steps=N])``; ``trt[(fp16|int8)]`` when every argument may be left out."""
    if not args:
        return step
    pieces = []
    for index, arg in enumerate(args):
        text = ("," if index else "") + arg.usage()
        pieces.append(text if arg.required or (index == 0 and not any(a.required for a in args)) else f"[{text}]")
    inner = "".join(pieces)
    return f"{step}({inner})" if any(a.required for a in args) else f"{step}[({inner})]"
