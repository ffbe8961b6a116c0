"""Recipe strings: ``prune(0.5)+ptq(ort)`` is a chain of steps, each fed the previous step's artifact.

Parsing checks every step name, its arguments and that each step accepts what the one before produces,
so ``ort+prune(0.5)`` fails at once with a message naming the step instead of halfway through a build.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from data.errors import InputError
from optim.registry import MODULE, StepSpec, get_step, resolve

_STEP_RE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\((.*)\))?\s*$")


@dataclass(frozen=True)
class Step:
    name: str
    raw_args: tuple[str, ...]
    args: dict[str, Any] = field(compare=False, hash=False)
    spec: StepSpec = field(compare=False, hash=False, repr=False)

    def __str__(self) -> str:
        return f"{self.name}({','.join(self.raw_args)})" if self.raw_args else self.name


@dataclass(frozen=True)
class Recipe:
    steps: tuple[Step, ...]

    def __str__(self) -> str:
        return "+".join(str(s) for s in self.steps)

    @property
    def devices(self) -> frozenset[str]:
        devices = frozenset({"cpu", "cuda"})
        for step in self.steps:
            devices &= step.spec.devices
        return devices

    def _each(self, field: str, *context: Any) -> list[Any]:
        """Every step's declaration ``field``, evaluated for its own arguments."""
        return [resolve(getattr(step.spec, field), dict(step.args), *context) for step in self.steps]

    def reload_compiles(self, device: str) -> bool:
        """Whether loading this recipe's saved variant compiles again (``torch.compile``, PT2E x86)."""
        return any(self._each("reload_compiles", device))

    def needs(self, device: str) -> tuple[str, ...]:
        """Capabilities of the machine (``native_bf16``, ``x86_avx2``, ...) the recipe's steps need to pay off."""
        return tuple(dict.fromkeys(need for needs in self._each("needs", device) for need in needs or ()))

    def slow_hints(self, device: str, flags: set[str]) -> list[str]:
        """Why this recipe may be slower than FP32 on such a machine (each step's own reasons)."""
        return list(dict.fromkeys(hint for hints in self._each("slow_hints", device, flags) for hint in hints or ()))

    def search_candidate(self) -> bool:
        """Whether ``--search`` builds chains on this recipe: one of its steps is a fast backend."""
        return any(self._each("search_candidate"))

    def compressing_steps(self, device: str) -> int:
        """How many of its steps narrow the arithmetic or remove channels (the likely leaders of a sweep)."""
        return sum(bool(c) for c in self._each("compresses", device))

    def calibrates(self) -> bool | str:
        """True when a step calibrates on the train split's calibration subset; else how a step learns its ranges on
        the train split (a sentence), or False."""
        found = [c for c in (step.spec.calibrates for step in self.steps) if c]
        return True if True in found else (found[0] if found else False)

    def fallbacks(self) -> list[tuple[str, str]]:
        """(recipe, why) to try in order when this recipe misses the accuracy budget (its last step's plan)."""
        last = self.steps[-1].spec
        return list(last.fallbacks(self)) if last.fallbacks is not None else []

    def unavailable_reason(self, device: str) -> str | None:
        """Why this recipe cannot run on ``device`` here (hardware or a missing backend), or None."""
        for step in self.steps:
            if device not in step.spec.devices:
                return f"step {step} runs only on {'/'.join(sorted(step.spec.devices))}"
            if step.spec.available is not None:
                reason = step.spec.available(dict(step.args), device)
                if reason:
                    return f"step {step}: {reason}"
        return None


def split_top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses: ``a(1,2),b`` -> ``['a(1,2)', 'b']``."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise InputError(f"unbalanced ')' in {text!r}")
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise InputError(f"unbalanced '(' in {text!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_step(text: str) -> Step:
    match = _STEP_RE.match(text)
    if not match:
        raise InputError(f"cannot parse recipe step {text!r}; write name or name(arg,...), e.g. prune(0.5)")
    name, arg_text = match.group(1), match.group(2)
    spec = get_step(name)
    raw_args = tuple(a for a in (x.strip() for x in arg_text.split(","))) if arg_text and arg_text.strip() else ()
    if any(a == "" for a in raw_args):
        raise InputError(f"empty argument in recipe step {text!r}")
    try:
        args = spec.parse_args(raw_args)
    except InputError as exc:
        raise InputError(f"recipe step {text.strip()!r}: {exc} (usage: {spec.usage})") from None
    return Step(name=name, raw_args=raw_args, args=args, spec=spec)


def parse(text: str) -> Recipe:
    """Parse and validate a recipe; raises :class:`InputError` naming the offending step."""
    if not text or not text.strip():
        raise InputError("empty recipe; see `python -m optim list` for the steps")
    steps = tuple(parse_step(part) for part in split_top_level(text.strip(), "+"))
    produced = MODULE  # every chain starts from the loaded FP32 module
    for index, step in enumerate(steps):
        if produced not in step.spec.accepts:
            before = f"after {steps[index - 1]}" if index else "as the first step"
            raise InputError(
                f"recipe {text!r}: step {step} cannot run {before} (it takes {'/'.join(sorted(step.spec.accepts))}, "
                f"gets {produced})"
            )
        produced = step.spec.output_kind(step.args)
    return Recipe(steps)


def parse_list(text: str, all_recipes: Sequence[str]) -> list[Recipe]:
    """Parse ``--recipes``: comma-separated recipes, or ``all`` for the given defaults."""
    if text.strip() == "all":
        return [parse(r) for r in all_recipes]
    parts = [r.strip() for r in split_top_level(text, ",")]
    if "" in parts:  # 'ort,,ptq' or a trailing comma: a recipe lost in editing, not one to skip silently
        raise InputError(f"--recipes {text!r} has an empty entry between commas; name a recipe in each")
    return [parse(r) for r in parts]
