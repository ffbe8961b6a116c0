"""The run configuration: one typed value that every entry point builds and every process receives whole.

``python -m bench``, ``pytest bench``, the gate's A/B mode and ``python -m bench.profile`` each turn their options
into a :class:`RunConfig` with :func:`bench.options.run_config_from_args`; a :class:`Job` is that configuration plus
one recipe. It is written to ``run_config.json`` and read back strictly on ``--resume`` (an unknown field or another
version is an error, never a silent default), so a resumed run measures exactly what the interrupted one did.

Each field says, in its definition, what ``--resume`` (and a re-run grid file) may do with it: ``fixed`` fields
define what was measured and must not change, ``free`` ones say how the run is watched (timeouts, trackers, the
executor), ``answer`` ones change only the answer drawn from the measurements (the top-1 budget), and ``derived``
ones are worked out from the others and kept as stored. Each field also says which options rebuild it
(:meth:`RunConfig.to_cli_args`), which is how a stored run is compared with the options given again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.scenarios import ScenarioConfig
from data.errors import InputError
from data.loaders import CALIB_SIZE
from models.spec import LoadSpec
from optim.context import BuildSettings
from optim.registry import REFERENCE

RUN_CONFIG_VERSION = 3
READABLE_VERSIONS = (2, 3)  # version 2 kept the Ray executor's options as fields of their own
DEVICES = ("cpu", "cuda")
FIXED, FREE, ANSWER, DERIVED = "fixed", "free", "answer", "derived"
# Interleaved rounds per variant and scenario, and timed processes a side on CPU (docs/measurement.md says why).
SWEEP_ROUNDS = 60
QUICK_ROUNDS = 20  # --quick is a smoke run: its shorter budget in fewer, longer slices
PRECISE_ROUNDS = 2 * SWEEP_ROUNDS
CPU_REPLICAS = 2  # loaded copies timed per side on CPU, where loading the saved variant does not compile
PRECISE_REPLICAS = 4


@dataclass(frozen=True)
class _Cli:
    """How a field is written as options: ``names`` for messages, ``render(value)`` for the arguments."""

    names: tuple[str, ...]
    render: Callable[[Any], list[str]]

    def __call__(self, value: Any) -> list[str]:
        return self.render(value)


def _option(name: str) -> _Cli:
    return _Cli((name,), lambda v: [] if v is None else [name, f"{v:g}" if isinstance(v, float) else str(v)])


def _flag(name: str, when: bool = True) -> _Cli:
    return _Cli((name,), lambda v: [name] if bool(v) == when else [])


def _spec(default: Any = dataclasses.MISSING, on_resume: str = FIXED, cli: Callable | None = None, **kw: Any) -> Any:
    """A field with what ``--resume`` may do with it and the options that rebuild it."""
    if default is not dataclasses.MISSING:
        kw["default"] = default
    return field(metadata={"on_resume": on_resume, "cli": cli}, **kw)


def _scenario_args(scenarios: tuple[ScenarioConfig, ...]) -> list[str]:
    from bench.scenarios import get

    return [a for s in scenarios for a in get(s.name).cli_args(s)]


_LOAD = _Cli(
    ("CKPT", "--model", "--model-kwargs", "--num-classes", "--img-size", "--mean", "--std", "--random-init"),
    lambda load: ([load.path] if load.path else ["--random-init"]) + load.to_cli_args(),
)
_SCENARIOS = _Cli(("--batch-size",), _scenario_args)


@dataclass(frozen=True)
class RunConfig:
    """What a run measures and how. Plain values only: it is shipped to processes and to cluster nodes."""

    load: LoadSpec = _spec(cli=_LOAD)
    recipes: tuple[str, ...] = _spec((REFERENCE,), cli=_Cli(("--recipes",), lambda v: ["--recipes", ",".join(v)]))
    scenarios: tuple[ScenarioConfig, ...] = _spec((), cli=_SCENARIOS)
    device: str = _spec("cpu", cli=_option("--device"))
    data_spec: str | None = _spec(None, cli=_option("--data"))
    data_dir: str | None = _spec(None, cli=_option("--data-dir"))
    skip_bad_images: bool = _spec(False, cli=_flag("--skip-bad-images"))
    threads: int = _spec(1, cli=_option("--threads"))
    seed: int = _spec(0, cli=_option("--seed"))
    calib_size: int = _spec(CALIB_SIZE, cli=_option("--calib-size"))
    quick: bool = _spec(False, cli=_flag("--quick"))
    accuracy: bool = _spec(True)
    max_drop: float = _spec(1.0, ANSWER, cli=_option("--max-drop"))
    timeout_s: float = _spec(1800.0, FREE, cli=_option("--timeout"))
    run_id: str = _spec("", FREE)
    paired: bool = _spec(True, cli=_flag("--unpaired", when=False))
    rounds: int = _spec(SWEEP_ROUNDS, cli=_option("--rounds"))
    replicas: int | None = _spec(None, cli=_option("--replicas"))  # timed processes a side (None: the default)
    cpu_replicas: int = _spec(CPU_REPLICAS, DERIVED)  # that default on CPU (4 with --precise)
    precise: bool = _spec(False, cli=_flag("--precise"))
    wandb: bool = _spec(False, FREE, cli=_flag("--wandb"))
    executor: str = _spec("local", FREE, cli=_option("--executor"))
    executor_options: Mapping[str, Any] = _spec(on_resume=FREE, default_factory=dict)  # the executor's own
    recipe_choice: Mapping[str, Any] = _spec(on_resume=DERIVED, default_factory=dict)  # how defaults were chosen
    resumed: tuple[Mapping[str, Any], ...] = _spec((), DERIVED)  # each --resume that changed a free field: what

    def job(self, recipe: str, run_dir: str, accuracy: bool | None = None) -> Job:
        return Job(
            config=self, recipe=recipe, run_dir=str(run_dir), accuracy=self.accuracy if accuracy is None else accuracy
        )

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def build_settings(self) -> BuildSettings:
        """What a recipe's build depends on: the same for every process of the run."""
        largest = max((s.batch_size for s in self.scenarios), default=16)
        return BuildSettings(
            device=self.device,
            threads=self.threads,
            seed=self.seed,
            quick=self.quick,
            calib_size=self.calib_size,
            data_spec=self.data_spec,
            data_dir=self.data_dir,
            skip_bad_images=self.skip_bad_images,
            max_drop=self.max_drop,
            max_batch=largest,
        )

    def scenario(self, name: str) -> ScenarioConfig | None:
        return next((s for s in self.scenarios if s.name == name), None)

    def to_cli_args(self) -> list[str]:
        """The options of ``python -m bench`` that build this configuration again (the executor's own options are
        its spec's: :meth:`bench.run.executors.ExecutorSpec.to_cli`)."""
        out: list[str] = []
        for f in dataclasses.fields(self):
            render = f.metadata.get("cli")
            if render is not None:
                out += render(getattr(self, f.name))
        return out

    def changed_fields(self, other: RunConfig, policy: str = FIXED) -> list[str]:
        """The fields of ``policy`` in which ``other`` differs from this configuration."""
        return [
            f.name
            for f in dataclasses.fields(self)
            if f.metadata.get("on_resume") == policy and getattr(self, f.name) != getattr(other, f.name)
        ]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": RUN_CONFIG_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "load":
                value = value.to_dict()
            elif f.name == "scenarios":
                value = [s.to_dict() for s in value]
            elif isinstance(value, tuple):
                value = [dict(v) if isinstance(v, Mapping) else v for v in value]
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> RunConfig:
        """Strict: the version must be one this reader knows and every field must be known and of the right type."""
        if not isinstance(data, Mapping):
            raise InputError(f"a run configuration must be a JSON object, got {type(data).__name__}")
        version = data.get("version")
        if version not in READABLE_VERSIONS:
            raise InputError(
                f"run configuration version {version!r} is not one of {', '.join(map(str, READABLE_VERSIONS))} "
                "(written by another optbench version); start a new run instead of resuming"
            )
        data = _upgraded(data) if version == 2 else data
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
                if not isinstance(value, list):
                    raise InputError("run configuration field scenarios must be a list")
                values[name] = tuple(ScenarioConfig.from_dict(item) for item in value)
            elif name == "recipes":
                if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
                    raise InputError("run configuration field recipes must be a list of strings")
                values[name] = tuple(value)
            elif name == "resumed":
                if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
                    raise InputError("run configuration field resumed must be a list of objects")
                values[name] = tuple(dict(item) for item in value)
            elif name in ("recipe_choice", "executor_options"):
                if not isinstance(value, Mapping):
                    raise InputError(f"run configuration field {name} must be an object")
                values[name] = dict(value)
            else:
                values[name] = _typed(name, value, known[name].type)
        return RunConfig(**values).validated()

    def validated(self) -> RunConfig:
        if self.device not in DEVICES:
            raise InputError(f"unknown device {self.device!r}; choose one of: {', '.join(DEVICES)}")
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


def field_options(name: str) -> list[str]:
    """The options that set field ``name`` (for messages: ``--data``, ``--unpaired``, ...)."""
    f = next(f for f in dataclasses.fields(RunConfig) if f.name == name)
    cli = f.metadata.get("cli")
    return list(cli.names) if cli is not None else [name]


def _upgraded(data: Mapping[str, Any]) -> dict[str, Any]:
    """A version-2 configuration in the version-3 layout (the Ray address and target became executor options)."""
    out = {k: v for k, v in data.items() if k not in ("ray_address", "ray_target")}
    options = {k: data[f"ray_{k}"] for k in ("address", "target") if data.get(f"ray_{k}") is not None}
    out["executor_options"] = options
    out["version"] = RUN_CONFIG_VERSION
    return out


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
