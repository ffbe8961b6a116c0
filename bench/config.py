"""The run configuration: one typed value that every entry point builds and every process receives whole.

``python -m bench``, ``pytest bench``, the gate's A/B mode, the producer commands and ``python -m bench.profile``
each turn their options into a :class:`RunConfig`; a :class:`Job` is that configuration plus one recipe. It is
written to ``run_config.json`` and read back strictly on ``--resume`` (an unknown field or another version is an
error, never a silent default), so a resumed run measures exactly what the interrupted one did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.measure.timing import ScenarioConfig
from models.errors import InputError
from models.spec import LoadSpec

RUN_CONFIG_VERSION = 2
DEVICES = ("cpu", "cuda")
EXECUTORS = ("local", "ray")


CALIB_SIZE = 512  # calibration images from the train split: enough for stable activation ranges
# With random weights there is no accuracy to keep and INT8 speed does not depend on the ranges, so calibrating on
# 512 images only costs time (resnet50 at 224 on 2 cores: 13-113 s more build time per INT8 recipe than with 64).
RANDOM_INIT_CALIB_SIZE = 64


@dataclass(frozen=True)
class RunConfig:
    """What a run measures and how. Plain values only: it is shipped to processes and to cluster nodes."""

    load: LoadSpec
    recipes: tuple[str, ...] = ("fp32",)
    scenarios: tuple[ScenarioConfig, ...] = ()
    device: str = "cpu"
    data_spec: str | None = None
    data_dir: str | None = None
    skip_bad_images: bool = False
    threads: int = 1
    seed: int = 0
    calib_size: int = CALIB_SIZE
    quick: bool = False
    accuracy: bool = True
    max_drop: float = 1.0
    timeout_s: float = 1800.0
    run_id: str = ""
    paired: bool = True
    rounds: int = 60
    replicas: int | None = None  # timed processes a side (None: 2 on CPU where loading does not compile, else 1)
    cpu_replicas: int = 2  # the default above (4 with --precise)
    precise: bool = False
    wandb: bool = False
    executor: str = "local"
    ray_address: str | None = None
    ray_target: str | None = None
    recipe_choice: Mapping[str, Any] = field(default_factory=dict)  # how the default recipes were chosen (machine)

    def job(self, recipe: str, run_dir: str, accuracy: bool | None = None) -> Job:
        return Job(
            config=self, recipe=recipe, run_dir=str(run_dir), accuracy=self.accuracy if accuracy is None else accuracy
        )

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": RUN_CONFIG_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "load":
                value = value.to_dict()
            elif f.name == "scenarios":
                value = [s.to_dict() for s in value]
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> RunConfig:
        """Strict: the version must match and every field must be known and of the right type."""
        if not isinstance(data, Mapping):
            raise InputError(f"a run configuration must be a JSON object, got {type(data).__name__}")
        version = data.get("version")
        if version != RUN_CONFIG_VERSION:
            raise InputError(
                f"run configuration version {version!r} is not {RUN_CONFIG_VERSION} (written by another optbench "
                "version); start a new run instead of resuming"
            )
        known = {f.name: f for f in dataclasses.fields(RunConfig)}
        unknown = sorted(set(data) - set(known) - {"version"})
        if unknown:
            raise InputError(f"unknown run configuration field(s): {', '.join(unknown)}")
        missing = sorted(name for name in ("load", "recipes", "scenarios", "device", "run_id") if name not in data)
        if missing:
            raise InputError(f"run configuration lacks {', '.join(missing)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "version":
                continue
            if name == "load":
                values[name] = LoadSpec.from_dict(value)
            elif name == "scenarios":
                values[name] = _scenarios(value)
            elif name == "recipes":
                if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
                    raise InputError("run configuration field recipes must be a list of strings")
                values[name] = tuple(value)
            elif name == "recipe_choice":
                if not isinstance(value, Mapping):
                    raise InputError("run configuration field recipe_choice must be an object")
                values[name] = dict(value)
            else:
                values[name] = _typed(name, value, known[name].type)
        return RunConfig(**values).validated()

    def validated(self) -> RunConfig:
        if self.device not in DEVICES:
            raise InputError(f"unknown device {self.device!r}; choose one of: {', '.join(DEVICES)}")
        if self.executor not in EXECUTORS:
            raise InputError(f"unknown executor {self.executor!r}; choose one of: {', '.join(EXECUTORS)}")
        for name in ("threads", "calib_size", "rounds", "cpu_replicas"):
            if getattr(self, name) <= 0:
                raise InputError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.replicas is not None and self.replicas <= 0:
            raise InputError(f"--replicas must be positive, got {self.replicas}")
        if not self.timeout_s > 0:
            raise InputError(f"--timeout must be positive, got {self.timeout_s:g}")
        if not self.max_drop >= 0:
            raise InputError(f"--max-drop must be >= 0, got {self.max_drop:g}")
        if not self.recipes:
            raise InputError("no recipes to run")
        return self

    def measured_differently(self, other: RunConfig) -> list[str]:
        """The fields in which ``other`` would measure something else than this run (for ``--resume``)."""
        same_ok = {"timeout_s", "wandb", "executor", "ray_address", "ray_target", "run_id"}
        return [
            f.name
            for f in dataclasses.fields(self)
            if f.name not in same_ok and getattr(self, f.name) != getattr(other, f.name)
        ]


_SCALARS = {"str": str, "int": int, "float": (int, float), "bool": bool}


def _typed(name: str, value: Any, annotation: Any) -> Any:
    """``value`` checked against a field annotation such as ``int | None`` (kept simple: scalars only)."""
    text = str(annotation)
    optional = "None" in text
    if value is None:
        if optional:
            return None
        raise InputError(f"run configuration field {name} must not be null")
    base = text.replace(" | None", "").strip()
    kind = _SCALARS.get(base)
    if kind is None:
        raise InputError(f"run configuration field {name} has a type this reader does not know ({text})")
    if (isinstance(value, bool) and base != "bool") or not isinstance(value, kind):
        raise InputError(f"run configuration field {name} must be {base}, got {value!r}")
    return float(value) if base == "float" else value


def _scenarios(value: Any) -> tuple[ScenarioConfig, ...]:
    if not isinstance(value, list):
        raise InputError("run configuration field scenarios must be a list")
    out = []
    names = {f.name for f in dataclasses.fields(ScenarioConfig)}
    for item in value:
        if not isinstance(item, Mapping) or set(item) - names or "name" not in item:
            raise InputError(f"run configuration: unreadable scenario {item!r}")
        out.append(ScenarioConfig(**item))
    return tuple(out)


@dataclass(frozen=True)
class Job:
    """One recipe of a run: the whole configuration travels with it. ``accuracy`` is off for processes that
    only time a variant another process built (its builder measures accuracy)."""

    config: RunConfig
    recipe: str
    run_dir: str
    accuracy: bool = True

    @property
    def device(self) -> str:
        return self.config.device

    @property
    def threads(self) -> int:
        return self.config.threads

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def quick(self) -> bool:
        return self.config.quick

    @property
    def scenarios(self) -> tuple[ScenarioConfig, ...]:
        return self.config.scenarios

    @property
    def run_id(self) -> str:
        return self.config.run_id

    def replace(self, **changes: Any) -> Job:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "recipe": self.recipe,
            "run_dir": self.run_dir,
            "accuracy": self.accuracy,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Job:
        return Job(
            config=RunConfig.from_dict(data["config"]),
            recipe=str(data["recipe"]),
            run_dir=str(data["run_dir"]),
            accuracy=bool(data.get("accuracy", True)),
        )
