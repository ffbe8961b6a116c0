"""``make gpu-check OUT=DIR [WHEELS=DIR]``: every CUDA path of optbench verified by one command in a few minutes.

Why one prepared command: GPU time is lent rarely and briefly (a bare machine, its own torch, no internet, a
quarter of an hour with start-up and copies included), and writing the checks while the machine is held spent
that time twice. This script is written and rehearsed beforehand: on a machine without CUDA it runs the same
steps on the CPU with a tiny model (a dry run, said so everywhere it writes), and the test suite runs that.

In order, each step under a time budget derived from ``--minutes`` (8 by default), the whole run ending by then:

1. setup: carried wheels from ``--wheels`` unpacked into a scratch folder on ``PYTHONPATH`` (only those whose
   package the machine lacks: the machine's own builds, compiled against its torch, win), then the machine is
   described (GPU, driver, CUDA, cuDNN, torch, packages) and the recipe names are checked against ``optim list``;
2. timers (:mod:`bench.tools.gpu_timers_check`): end-to-end against device-only on the same calls, fp32 and
   channels_last, batch 1 and the throughput batch;
3. one paired ``python -m bench`` sweep of every CUDA recipe that can run there (compiled and torchao first: the
   ones never measured on resnet50), stopped at its deadline with what it measured kept;
4. ``python -m bench.profile --target infer`` with the torch profiler: the trace is summarized (kernel count,
   top kernels);
5. every test marked ``gpu`` (``pytest -m gpu``, no ``-x``, the slowest compile test last), until the deadline.

Everything lands in ``--out`` as at most eight files (what a lent machine hands back): summary.md, summary.json,
leaderboard.md, results.jsonl (raw samples left out), pytest-gpu.txt, timers.json, profile.txt, logs.txt. The
run folders themselves go to a temporary folder that is removed, or to ``--results DIR`` to keep them.

It runs under whatever torch the machine has (it never installs one): the project is imported from the checkout
through ``PYTHONPATH``, every step is a subprocess of the interpreter that started this one.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from data.errors import ArgumentParser, InputError, run_cli

REPO = Path(__file__).resolve().parents[2]

# The files written into --out, and nothing else: a lent machine hands back at most eight.
SUMMARY_MD, SUMMARY_JSON, LEADERBOARD, RESULTS = "summary.md", "summary.json", "leaderboard.md", "results.jsonl"
PYTEST_TXT, TIMERS, PROFILE_TXT, LOGS = "pytest-gpu.txt", "timers.json", "profile.txt", "logs.txt"
OUTPUT_FILES = (SUMMARY_MD, SUMMARY_JSON, LEADERBOARD, RESULTS, PYTEST_TXT, TIMERS, PROFILE_TXT, LOGS)

# Every CUDA recipe that can run on a machine without TensorRT or onnxruntime-gpu, most needed first: the compiled
# and torchao recipes were never measured on resnet50 by a lent machine; the eager ones were (results/gpu).
GPU_RECIPES = (
    "fp32",
    "compile(reduce-overhead,fp16)",
    "compile(fp16)",
    "torchao(int8-dynamic)",
    "fp32-cl",
    "fp16",
    "bf16",
)
# Recipes whose backend no lent machine had, added at the end where the package is installed (the Docker image, a
# user's T4): then the same command verifies TensorRT and ONNX Runtime's CUDA/TensorRT providers (give it --minutes).
WHEN_INSTALLED = (("torch-tensorrt", ("trt(fp16)", "trt(int8)")), ("onnxruntime-gpu", ("ort",)))
# The dry run's: eager recipes that run on any CPU, plus fp16 for a skipped row (compiling would not fit in 2 minutes
# on 2 cores: the dry run rehearses the plumbing, the tests of each recipe are the suite's).
DRY_RECIPES = ("fp32", "fp32-cl", "fp16")

# Carried wheels: pure Python (py3-none-any) or one build for every CPython >= 3.10 (cp310-abi3), so one folder
# serves whatever Python the lent machine has. torchao's release must match the machine's torch: 0.17.0 is the one
# that ran with torch 2.11 on the lent H100 and H200 (the pinned environment has 0.18.0 with torch 2.14.1).
GPU_WHEELS = (
    "torchao==0.17.0",
    "torch-pruning==1.6.1",
    "onnxscript==0.7.2",
    "onnx-ir==1.1.0",
    "onnxslim==0.1.98",
    "pytest-benchmark==5.3.1",
    "py-cpuinfo2==10.1.1",
    "tabulate==0.10.0",
    "safetensors==0.8.0",
)

# Packages the summary reports; the first group is what the check's own steps import.
NEEDED = (
    "torch",
    "timm",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "pillow",
    "psutil",
    "tqdm",
    "tabulate",
    "matplotlib",
    "tensorboard",
    "pytest",
    "torchao",
)
OPTIONAL = (
    "torchvision",
    "safetensors",
    "torch-pruning",
    "onnx",
    "onnxscript",
    "onnxslim",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "nncf",
    "torch-tensorrt",
    "tensorrt",
    "nvidia-modelopt",
    "pytest-benchmark",
)

KILL_GRACE_S = 10.0  # after SIGINT, before SIGKILL: the sweep closes its measurement processes in that time
LOG_TAIL_LINES = 150

_PROBE = r"""
import json, platform, sys
from importlib import metadata
out = {"python": platform.python_version(), "executable": sys.executable, "packages": {}}
for name in json.loads(sys.argv[1]):
    try:
        out["packages"][name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        out["packages"][name] = None
try:
    import torch
    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.version.cuda
    out["cuda_available"] = bool(torch.cuda.is_available())
    out["cudnn"] = torch.backends.cudnn.version() if out["cuda_available"] else None
    if out["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        out["gpu"] = {"name": p.name, "sm_count": p.multi_processor_count, "memory_mib": p.total_memory // 2**20,
                      "capability": f"{p.major}.{p.minor}", "count": torch.cuda.device_count()}
except Exception as exc:
    out["torch_error"] = f"{type(exc).__name__}: {exc}"
print("PROBE " + json.dumps(out))
"""


@dataclass(frozen=True)
class Plan:
    """What the check runs and the seconds each step may take; ``mode`` is ``gpu`` or ``dry`` (CPU rehearsal)."""

    mode: str
    device: str
    model: str
    img_size: int
    num_classes: int
    recipes: tuple[str, ...]
    timer_batches: tuple[int, ...]
    timer_min_calls: int
    rounds: int
    total_s: float
    timers_s: float
    profile_s: float
    pytest_min_s: float
    margin_s: float
    variant_timeout_s: float
    profile_batch: int
    profile_steps: int
    throughput_batch: int | None = None  # None: the sweep's default (128 on CUDA)
    quick: bool = True
    serve: bool = False
    sweep_extra: tuple[str, ...] = ()

    @property
    def dry(self) -> bool:
        return self.mode == "dry"


def make_plan(mode: str, minutes: float | None = None) -> Plan:
    """The budgets. GPU: 8 min = setup (~20 s) + timers 45 s + sweep (the rest) + profile 45 s + pytest >= 110 s.

    The sweep gets what the others leave: its recipes are ordered by need, each build or measurement is capped
    by ``--timeout`` so one slow compile cannot take the rest, and it is stopped at its deadline. ``--quick``
    budgets and 10 rounds keep an eager variant near 10 s, so most of its time goes to compiling.
    """
    if mode == "gpu":
        total = 60.0 * (minutes if minutes is not None else 8.0)
        return Plan(
            mode="gpu",
            device="cuda",
            model="resnet50",
            img_size=224,
            num_classes=1000,
            recipes=GPU_RECIPES,
            timer_batches=(1, 128),
            timer_min_calls=20,
            rounds=10,
            total_s=total,
            timers_s=45.0,
            profile_s=45.0,
            pytest_min_s=110.0,
            margin_s=15.0,
            variant_timeout_s=150.0,
            profile_batch=32,
            profile_steps=5,
        )
    if mode == "dry":
        total = 60.0 * (minutes if minutes is not None else 3.0)
        return Plan(
            mode="dry",
            device="cpu",
            model="resnet10t",
            img_size=32,
            num_classes=10,
            recipes=DRY_RECIPES,
            timer_batches=(1, 8),
            timer_min_calls=5,
            rounds=5,
            total_s=total,
            timers_s=6.0,
            profile_s=30.0,
            pytest_min_s=30.0,
            margin_s=5.0,
            variant_timeout_s=60.0,
            profile_batch=8,
            profile_steps=2,
            throughput_batch=8,
        )
    raise InputError(f"unknown plan {mode!r}")


@dataclass
class Step:
    """One step's outcome as the summary reports it."""

    name: str
    status: str = "not run"  # ok | failed | stopped (deadline) | not run
    seconds: float = 0.0
    budget_s: float = 0.0
    command: list[str] = field(default_factory=list)
    returncode: int | None = None
    detail: str = ""
    log: str = ""


class Clock:
    """The run's deadline: each step gets what is left after the budgets of the steps still to come."""

    def __init__(self, total_s: float) -> None:
        self.start = time.monotonic()
        self.total_s = total_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self, reserve_s: float = 0.0) -> float:
        return self.total_s - self.elapsed() - reserve_s


# ---------- wheels ----------

_WHEEL = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_fits(filename: str, version: tuple[int, int] | None = None, machine: str | None = None) -> str | None:
    """None when this interpreter can use the wheel, else why not (pure-Python, abi3 or this CPython's own build)."""
    match = _WHEEL.match(filename)
    if not match:
        return "not a wheel file name"
    major, minor = version or sys.version_info[:2]
    arch = machine or platform.machine()
    plats = match["plat"].split(".")
    if not any(p == "any" or (p.startswith(("manylinux", "linux", "musllinux")) and p.endswith(arch)) for p in plats):
        return f"built for {match['plat']}, this machine is linux {arch}"
    abis, pys = match["abi"].split("."), match["py"].split(".")
    if "none" in abis and any(p in ("py3", f"py{major}{minor}", f"py{major}") for p in pys):
        return None
    for tag in pys:
        found = re.fullmatch(r"cp(\d)(\d+)", tag)
        if not found:
            continue
        wanted = (int(found[1]), int(found[2]))
        if "abi3" in abis and wanted <= (major, minor):
            return None
        if wanted == (major, minor):
            return None
    return f"built for {match['py']}-{match['abi']}, this is CPython {major}.{minor}"


def installed_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def unpack_wheels(wheels: Path, site: Path) -> list[dict[str, Any]]:
    """Unpack each carried wheel whose package the machine lacks into ``site`` (on PYTHONPATH for every step).

    A wheel is a zip of the files pip would place in site-packages, so unpacking is installing, without pip,
    without writing to the machine's Python, and in a second. A package the machine already has is left as the
    machine has it: its build matches the machine's torch, a carried one may not.
    """
    report = []
    for wheel in sorted(wheels.glob("*.whl")):
        match = _WHEEL.match(wheel.name)
        entry: dict[str, Any] = {"wheel": wheel.name, "size_bytes": wheel.stat().st_size}
        if not match:
            report.append({**entry, "action": "ignored", "why": "not a wheel file name"})
            continue
        dist = canonical(match["name"])
        entry["package"], entry["version"] = dist, match["version"]
        have = installed_version(dist)
        unfit = wheel_fits(wheel.name)
        if have is not None:
            entry.update(action="not needed", why=f"the machine has {dist} {have}")
        elif any(r.get("package") == dist and r.get("action") == "unpacked" for r in report):
            entry.update(action="ignored", why="another wheel of this package was unpacked")
        elif unfit:
            entry.update(action="ignored", why=unfit)
        else:
            try:
                with zipfile.ZipFile(wheel) as archive:
                    archive.extractall(site)
            except (zipfile.BadZipFile, OSError) as exc:
                entry.update(action="ignored", why=f"cannot unpack: {exc}")
                report.append(entry)
                continue
            for data in site.glob("*.data"):  # purelib/platlib of a .data folder belong in site-packages itself
                for sub in ("purelib", "platlib"):
                    for item in (data / sub).glob("*") if (data / sub).is_dir() else ():
                        shutil.move(str(item), str(site / item.name))
                shutil.rmtree(data, ignore_errors=True)
            entry.update(action="unpacked", why="")
        report.append(entry)
    return report


def fetch_wheels(dest: Path) -> int:
    """``pip download --no-deps`` of :data:`GPU_WHEELS` into ``dest`` (on a machine that reaches a registry)."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", *fetch_args(dest), *GPU_WHEELS]
    print(" ".join(command), flush=True)
    code = subprocess.call(command)
    total = sum(w.stat().st_size for w in dest.glob("*.whl"))
    for wheel in sorted(dest.glob("*.whl")):
        print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    print(f"{total / 2**20:7.2f} MiB  in all ({dest})")
    return code


def fetch_args(dest: Path) -> list[str]:
    """Tags every lent machine can use: pure Python, or abi3 for CPython >= 3.10 on manylinux x86_64."""
    platforms = ("manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
    args = ["--no-deps", "--only-binary=:all:", "--dest", str(dest), "--python-version", "3.10"]
    args += ["--implementation", "cp", "--abi", "abi3", "--abi", "none"]
    for plat in platforms:
        args += ["--platform", plat]
    return args


# ---------- subprocesses ----------


def child_env(work: Path, site: Path | None) -> dict[str, str]:
    """The environment of every step: this checkout first on the path, every write inside the scratch folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    env.pop("PYTEST_ADDOPTS", None)  # a -x there would let one failure hide the rest
    paths = [str(REPO), *([str(site)] if site else []), *filter(None, [os.environ.get("PYTHONPATH", "")])]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(
        OPTBENCH_RESULTS=str(work / "results"),
        OPTBENCH_CACHE=str(work / "cache"),
        TORCHINDUCTOR_CACHE_DIR=str(work / "inductor"),
        TRITON_CACHE_DIR=str(work / "triton"),
        WANDB_MODE="disabled",
        WANDB_SILENT="true",
        PYTHONUNBUFFERED="1",
        MPLBACKEND=os.environ.get("MPLBACKEND", "Agg"),
    )
    return env


def stop(proc: subprocess.Popen) -> None:
    """SIGINT to the step's process group (it closes its measurement processes), then SIGKILL after a grace."""
    for sig, wait in ((signal.SIGINT, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_step(step: Step, command: list[str], env: dict[str, str], log: Path, timeout_s: float) -> Step:
    """Run ``command`` (output to ``log``) for at most ``timeout_s``; past it the step is ``stopped``."""
    step.command, step.budget_s, step.log = command, round(timeout_s, 1), str(log)
    if timeout_s < 5:
        step.status, step.detail = "not run", "no time left before the deadline"
        return step
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO,
            start_new_session=True,  # its own process group: stopping it reaches every process it started
        )  # fmt: skip
        try:
            step.returncode = proc.wait(timeout_s)
            step.status = "ok" if step.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            stop(proc)
            step.returncode = proc.poll()
            step.status, step.detail = "stopped", f"stopped at its deadline ({timeout_s:.0f} s)"
        except KeyboardInterrupt:  # its own session does not see the user's Ctrl-C: pass it on
            stop(proc)
            raise
    step.seconds = round(time.monotonic() - started, 1)
    return step


def capture(command: list[str], env: dict[str, str], timeout_s: float) -> tuple[int | None, str]:
    """(exit code, output) of a short command; (None, why) when it could not run or outlasted ``timeout_s``."""
    return captured(started(command, env), timeout_s)


def started(command: list[str], env: dict[str, str]) -> subprocess.Popen | str:
    """A short command started now (several start side by side: each spends seconds importing torch)."""
    try:
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            env=env, cwd=REPO, start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def captured(proc: subprocess.Popen | str, timeout_s: float) -> tuple[int | None, str]:
    """The exit code and output of a command from :func:`started`; (None, why) if it could not run in time."""
    if isinstance(proc, str):
        return None, proc
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop(proc)
        return None, f"no answer within {timeout_s:.0f} s"
    except KeyboardInterrupt:
        stop(proc)
        raise
    return proc.returncode, out


def tail(path: Path | str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


# ---------- the machine ----------


def describe_machine(env: dict[str, str], probe: subprocess.Popen | str | None = None) -> dict[str, Any]:
    """GPU, driver, CUDA, cuDNN, torch, CPU and package versions, as the steps' interpreter sees them."""
    code, out = captured(probe or started(probe_command(), env), 120)
    line = next((x for x in out.splitlines() if x.startswith("PROBE ")), None)
    info: dict[str, Any] = json.loads(line[6:]) if line else {"probe_error": out.strip()[-500:] or f"exit {code}"}
    info["cpu"] = cpu_model()
    info["cpu_count"] = os.cpu_count()
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "name,driver_version,memory.total,clocks.max.sm,power.limit"
        _, csv = capture([smi, f"--query-gpu={query}", "--format=csv,noheader"], env, 30)
        info["nvidia_smi"] = csv.strip().splitlines()
        _, banner = capture([smi], env, 30)
        found = re.search(r"CUDA Version:\s*([\d.]+)", banner)
        info["driver_cuda"] = found[1] if found else None
        found = re.search(r"Driver Version:\s*([\d.]+)", banner)
        info["driver"] = found[1] if found else None
    return info


def probe_command(extra: Sequence[str] = ()) -> list[str]:
    """The probe, asked for the reported packages and for those unpacked from carried wheels (seen or not)."""
    return [sys.executable, "-c", _PROBE, json.dumps(list(dict.fromkeys([*NEEDED, *OPTIONAL, *extra])))]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def recipe_steps(listing: str) -> set[str]:
    """Step names from ``python -m optim list`` (``compile[(...)]`` -> ``compile``)."""
    names = set()
    for line in listing.splitlines():
        found = re.match(r"^([A-Za-z][\w.-]*)", line)
        if found and not line.startswith(("default recipes", "chain steps")):
            names.add(found[1])
    return names


def unknown_recipes(recipes: Sequence[str], steps: set[str]) -> list[str]:
    """Recipes naming a step the listing lacks (a renamed step would otherwise fail the whole sweep)."""
    if not steps:
        return []
    bad = []
    for recipe in recipes:
        for part in split_chain(recipe):
            name = re.match(r"^[\w.-]*", part.strip())[0]
            if name not in steps:
                bad.append(recipe)
                break
    return bad


def split_chain(recipe: str) -> list[str]:
    """``prune(0.5)+trt(fp16)`` -> its steps (a ``+`` inside parentheses does not split)."""
    parts, depth, current = [], 0, ""
    for char in recipe:
        depth += char == "("
        depth -= char == ")"
        if char == "+" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def serve_option(help_text: str) -> tuple[bool, str]:
    """Whether ``python -m bench --help`` offers ``--serve`` as a plain flag (the serve scenario being added)."""
    found = re.search(r"--serve(?![\w-])( [A-Z_]+)?", help_text)
    if not found:
        return False, "python -m bench has no --serve option here"
    if found[1]:
        return False, f"--serve takes a value ({found[1].strip()}): pass it with --sweep-args"
    return True, "--serve listed by python -m bench --help: the serve scenario is measured"


# ---------- the steps ----------


def sweep_command(plan: Plan, results: Path, run_id: str, timeout_s: float) -> list[str]:
    command = [
        sys.executable, "-m", "bench", "--model", plan.model, "--random-init",
        "--num-classes", str(plan.num_classes), "--img-size", str(plan.img_size), "--device", plan.device,
        "--recipes", ",".join(plan.recipes), "--timeout", str(int(timeout_s)), "--rounds", str(plan.rounds),
        "--run-id", run_id, "--no-progress", "--results", str(results),
    ]  # fmt: skip
    if plan.quick:
        command.append("--quick")
    if plan.throughput_batch:
        command += ["--batch-size", str(plan.throughput_batch)]
    if plan.serve:
        command.append("--serve")
    return command + list(plan.sweep_extra)


def profile_command(plan: Plan, results: Path, run_id: str) -> list[str]:
    return [
        sys.executable, "-m", "bench.profile", "--random-init", "--model", plan.model,
        "--num-classes", str(plan.num_classes), "--img-size", str(plan.img_size), "--device", plan.device,
        "--target", "infer", "--profiler", "torch", "--steps", str(plan.profile_steps),
        "--batch-size", str(plan.profile_batch), "--no-fixes", "--run-id", run_id, "--results", str(results),
    ]  # fmt: skip


def timers_command(plan: Plan, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "bench.tools.gpu_timers_check", "--out", str(out), "--device", plan.device,
        "--model", plan.model, "--img-size", str(plan.img_size), "--num-classes", str(plan.num_classes),
        "--batches", ",".join(str(b) for b in plan.timer_batches), "--budget-s", str(plan.timers_s),
        "--min-calls", str(plan.timer_min_calls),
    ]  # fmt: skip


def pytest_order(ids: Sequence[str]) -> list[str]:
    """Collection order, but max-autotune compiles last: the slowest test (90 s on tiny inputs on the H100)."""
    return [i for i in ids if "max-autotune" not in i] + [i for i in ids if "max-autotune" in i]


_RESULT = re.compile(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")


def pytest_results(output: str) -> dict[str, str]:
    """Test id -> status, from ``pytest -v`` lines (the last word on a test wins: an ERROR after a PASSED)."""
    out: dict[str, str] = {}
    for line in output.splitlines():
        found = _RESULT.match(line)
        if found:
            out[found[1]] = found[2] if out.get(found[1]) != "FAILED" else "FAILED"
    return out


def collect_gpu_tests(env: dict[str, str], timeout_s: float) -> tuple[list[str], str]:
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests", "--collect-only", "-q", "-p", "no:cacheprovider"]
    command.append("--continue-on-collection-errors")
    _, out = capture(command, env, timeout_s)
    return [line for line in out.splitlines() if re.fullmatch(r"\S+\.py::\S.*", line) and " " not in line], out


def run_pytest(plan: Plan, env: dict[str, str], work: Path, clock: Clock, out_dir: Path) -> Step:
    step = Step("pytest -m gpu")
    ids, collected = collect_gpu_tests(env, max(10.0, min(120.0, clock.left(plan.margin_s + KILL_GRACE_S))))
    if not ids:
        step.status, step.detail = "failed", "no test marked gpu was collected"
        (out_dir / PYTEST_TXT).write_text(f"# pytest -m gpu: nothing collected\n\n{collected[-5000:]}\n")
        return step
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rA", "-m", "gpu"]
    command += ["--continue-on-collection-errors", "--basetemp", str(work / "pytest"), *pytest_order(ids)]
    log = work / "logs" / "pytest.log"
    run_step(step, command, env, log, clock.left(plan.margin_s + KILL_GRACE_S))
    output = Path(log).read_text(errors="replace") if log.exists() else ""
    results = pytest_results(output)
    for test_id in ids:
        results.setdefault(test_id, "NOT RUN")
    counts = {s: sum(1 for v in results.values() if v == s) for s in dict.fromkeys(results.values())}
    if step.status == "failed" and not any(s in counts for s in ("FAILED", "ERROR")):
        step.detail = f"pytest exit code {step.returncode}"
    step.detail = "; ".join(x for x in (", ".join(f"{n} {s.lower()}" for s, n in counts.items()), step.detail) if x)
    lines = [
        f"# pytest -m gpu ({'DRY RUN on CPU: every gpu test is skipped here' if plan.dry else plan.device})",
        f"command: {' '.join(command[:9])} ... ({len(ids)} test ids, max-autotune last)",
        f"status: {step.status}; exit code {step.returncode}; {step.seconds} s of {step.budget_s} s; {step.detail}",
        "",
        *[f"{status:8} {test_id}" for test_id, status in results.items()],
        "",
    ]
    marker = output.find("= FAILURES =")
    marker = marker if marker >= 0 else output.find("short test summary info")
    body = output[output.rfind("\n", 0, marker) + 1 :] if marker >= 0 else output[-20000:]
    (out_dir / PYTEST_TXT).write_text("\n".join(lines) + "\n" + body[-200_000:] + "\n")
    step.log = str(log)
    return step


def summarize_trace(profile_dir: Path) -> tuple[list[str], int]:
    """Event counts and the top kernels of the profiler trace (the trace itself stays in the scratch folder);
    returns the lines and the number of CUDA kernel events."""
    traces = sorted(profile_dir.glob("torch/infer/*.pt.trace.json*"))
    if not traces:
        return ["no trace file was written"], 0
    trace = traces[0]
    try:
        if trace.suffix == ".gz":
            import gzip

            events = json.loads(gzip.decompress(trace.read_bytes())).get("traceEvents", [])
        else:
            events = json.loads(trace.read_text()).get("traceEvents", [])
    except (OSError, ValueError) as exc:
        return [f"trace {trace.name} unreadable: {exc}"], 0
    cats: dict[str, int] = {}
    kernels: dict[str, list[float]] = {}
    for event in events:
        cat = str(event.get("cat", ""))
        cats[cat] = cats.get(cat, 0) + 1
        if cat == "kernel":
            kernels.setdefault(str(event.get("name", "?")), []).append(float(event.get("dur", 0.0)))
    lines = [
        f"trace: {trace.name}, {trace.stat().st_size / 2**20:.1f} MiB, {len(events)} events",
        "events by category: " + ", ".join(f"{k or '-'} {v}" for k, v in sorted(cats.items(), key=lambda kv: -kv[1])),
        f"CUDA kernel events: {sum(len(v) for v in kernels.values())} ({len(kernels)} distinct kernels)",
    ]
    if kernels:
        total = sum(sum(v) for v in kernels.values())
        lines.append(f"kernel time in the trace: {total / 1e3:.2f} ms; top kernels by total time:")
        for name, durs in sorted(kernels.items(), key=lambda kv: -sum(kv[1]))[:10]:
            lines.append(f"  {sum(durs) / 1e3:9.3f} ms  {len(durs):5d} calls  {name[:110]}")
    return lines, sum(len(v) for v in kernels.values())


def run_profile(plan: Plan, env: dict[str, str], work: Path, clock: Clock, out_dir: Path, run_id: str) -> Step:
    step = Step("profile")
    command = profile_command(plan, work / "results", run_id)
    budget = min(plan.profile_s, clock.left(plan.pytest_min_s + plan.margin_s))
    run_step(step, command, env, work / "logs" / "profile.log", budget)
    profile_dir = work / "results" / "runs" / run_id / "profile"
    trace_lines, kernel_count = summarize_trace(profile_dir)
    if step.status == "ok" and plan.device == "cuda" and kernel_count == 0:
        step.status, step.detail = "failed", "the trace holds no CUDA kernel"
    lines = [
        f"# python -m bench.profile --target infer ({'DRY RUN on CPU' if plan.dry else plan.device})",
        "command: " + " ".join(command[1:]),
        f"status: {step.status}; exit code {step.returncode}; {step.seconds} s of {step.budget_s} s {step.detail}",
        "",
        *trace_lines,
        "",
    ]
    for name in ("verdict.txt", "infer.torch.txt"):
        path = profile_dir / name
        if path.is_file():
            lines += [f"## {name}", path.read_text(errors="replace")[:20000], ""]
    step.detail = "; ".join(x for x in (step.detail, f"{kernel_count} CUDA kernel events in the trace") if x)
    (out_dir / PROFILE_TXT).write_text("\n".join(lines) + "\n")
    return step


def run_timers(plan: Plan, env: dict[str, str], work: Path, clock: Clock, out_dir: Path) -> Step:
    step = Step("timers")
    out = out_dir / TIMERS
    reserve = plan.pytest_min_s + plan.profile_s + plan.margin_s + 30.0
    budget = min(plan.timers_s + 20.0, clock.left(reserve))
    run_step(step, timers_command(plan, out), env, work / "logs" / "timers.log", budget)
    if out.is_file():
        data = json.loads(out.read_text())
        step.detail = f"{len(data.get('configs', []))} configurations" + ("" if data.get("complete") else " (partial)")
    elif step.status == "ok":
        step.status, step.detail = "failed", f"{TIMERS} was not written"
    return step


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def trimmed(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its raw samples (every call's time): the figures stay, the file stays small."""
    out = {}
    for key, value in row.items():
        if key in ("samples_ms", "slice_process", "process_samples", "device_samples_ms"):
            continue
        out[key] = f"<{len(value)} values left out>" if isinstance(value, list) and len(value) > 64 else value
    return out


def speedup(row: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """Paired speedup against fp32 and its 95% interval, from the row's time ratio (1 for fp32 itself)."""
    if row.get("recipe") == "fp32":
        return 1.0, None, None
    paired = row.get("paired") or {}
    ratio, ci = paired.get("time_ratio"), paired.get("ci95") or [None, None]
    if not ratio:
        return None, None, None
    return 1 / ratio, (1 / ci[1] if ci[1] else None), (1 / ci[0] if ci[0] else None)


def find_key(obj: Any, key: str) -> Any:
    """The first value stored under ``key`` anywhere in nested dicts and lists (None if absent)."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        obj = list(obj.values())
    if isinstance(obj, list):
        for item in obj:
            found = find_key(item, key)
            if found is not None:
                return found
    return None


def recipe_outcomes(recipes: Sequence[str], rows: list[dict[str, Any]], stopped: bool) -> list[dict[str, Any]]:
    """Per recipe: measured (with its figures), skipped or failed (with the reason), or never reached."""
    out = []
    for recipe in recipes:
        mine = [r for r in rows if r.get("recipe") == recipe]
        entry: dict[str, Any] = {"recipe": recipe}
        failed = [r for r in mine if r.get("status") == "failed"]
        skipped = [r for r in mine if r.get("status") == "skipped"]
        ok = [r for r in mine if r.get("status") == "ok"]
        if failed:
            entry.update(status="failed", reason=str(failed[0].get("error") or failed[0].get("note") or "")[:300])
        elif skipped:
            entry.update(status="skipped", reason=str(skipped[0].get("reason") or skipped[0].get("note") or "")[:300])
        elif ok:
            entry["status"] = "measured"
            for row in ok:
                sc = str(row.get("scenario"))
                up, low, high = speedup(row)
                entry[sc] = {
                    "batch": row.get("batch_size"),
                    "p50_ms": row.get("p50_ms"),
                    "device_p50_ms": row.get("device_p50_ms"),
                    "img_s": row.get("throughput_img_s"),
                    "device_img_s": row.get("device_throughput_img_s"),
                    "speedup": up,
                    "ci95": [low, high],
                    "build_s": row.get("build_s"),
                    "note": row.get("note"),
                }
            providers = find_key(ok[0].get("manifest"), "providers")  # ONNX Runtime: which execution provider ran
            if providers:
                entry["providers"] = providers
        elif recipe == "fp32" and stopped:
            entry.update(status="not written", reason="fp32's rows are written when a sweep ends; it was stopped")
        else:
            entry.update(status="not reached", reason="the sweep was stopped at its deadline" if stopped else "")
        out.append(entry)
    return out


def _num(value: Any, fmt: str = "{:.3f}") -> str:
    return fmt.format(value) if isinstance(value, (int, float)) else ""


def outcome_table(outcomes: list[dict[str, Any]]) -> list[str]:
    """The sweep in one table: both timings of both scenarios, paired speedups, or why a recipe has none."""
    lines = [
        "| recipe | status | b1 p50 ms e2e | b1 p50 ms device | b1 speedup (95% CI) | bN | bN img/s e2e "
        "| bN img/s device | bN speedup (95% CI) | build s | reason / note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lat, thr = o.get("latency") or {}, o.get("throughput") or {}

        def up(sc: dict[str, Any]) -> str:
            if sc.get("speedup") is None:
                return ""
            low, high = sc.get("ci95") or [None, None]
            ci = f" ({low:.2f}-{high:.2f})" if low and high else ""
            return f"{sc['speedup']:.2f}x{ci}"

        note = o.get("reason") or lat.get("note") or ""
        others = [k for k, v in o.items() if isinstance(v, dict) and k not in ("latency", "throughput")]
        if others:  # a scenario added since (serve): its figures are in summary.json
            note = f"also measured: {', '.join(others)}; {note}".rstrip("; ")
        if o.get("providers"):
            note = f"providers {','.join(map(str, o['providers']))}; {note}".rstrip("; ")
        lines.append(
            f"| {o['recipe']} | {o['status']} | {_num(lat.get('p50_ms'))} | {_num(lat.get('device_p50_ms'))} "
            f"| {up(lat)} | {thr.get('batch') or ''} | {_num(thr.get('img_s'), '{:,.0f}')} "
            f"| {_num(thr.get('device_img_s'), '{:,.0f}')} | {up(thr)} "
            f"| {_num(lat.get('build_s') or thr.get('build_s'), '{:.1f}')} | {str(note).replace('|', '/')[:160]} |"
        )
    return lines


def run_sweep(
    plan: Plan, env: dict[str, str], work: Path, clock: Clock, out_dir: Path, run_id: str
) -> tuple[Step, list[dict[str, Any]]]:
    """The paired sweep; its rows (trimmed) and a leaderboard into ``out_dir``, and each recipe's outcome."""
    step = Step("sweep")
    budget = clock.left(plan.profile_s + plan.pytest_min_s + plan.margin_s)
    timeout = max(30.0, min(plan.variant_timeout_s, budget * 0.6))
    command = sweep_command(plan, work / "results", run_id, timeout)
    run_step(step, command, env, work / "logs" / "sweep.log", budget)
    run_dir = work / "results" / "runs" / run_id
    rows = read_rows(run_dir / "results.jsonl")
    (out_dir / RESULTS).write_text("".join(json.dumps(trimmed(r), default=str) + "\n" for r in rows))
    outcomes = recipe_outcomes(plan.recipes, rows, step.status == "stopped")
    board = run_dir / "leaderboard.md"
    if board.is_file() and step.status != "stopped":
        shutil.copyfile(board, out_dir / LEADERBOARD)
    else:
        head = f"# Leaderboard built by the GPU check from {len(rows)} rows of results.jsonl"
        why = "(the sweep was stopped at its deadline before writing its own)" if step.status == "stopped" else ""
        (out_dir / LEADERBOARD).write_text("\n".join([f"{head} {why}".strip(), "", *outcome_table(outcomes), ""]))
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o["status"]] = counts.get(o["status"], 0) + 1
    parts = [", ".join(f"{n} {s}" for s, n in counts.items()), f"--timeout {int(timeout)} s a variant", step.detail]
    if step.status == "failed":
        parts.append(f"exit code {step.returncode}")
    step.detail = "; ".join(x for x in parts if x)
    return step, outcomes


# ---------- the outputs ----------


def timers_section(out_dir: Path, dry: bool = False) -> list[str]:
    path = out_dir / TIMERS
    if not path.is_file():
        return ["timers.json was not written (see logs.txt)."]
    data = json.loads(path.read_text())
    if not data.get("configs"):
        return [f"timers.json holds no measurement ({data.get('error') or 'the step was stopped first'})."]
    lines = [
        f"Clock for 'events': {data.get('events_clock')}; {data.get('seconds_per_pass')} s per pass"
        + ("." if data.get("complete") else "; partial: the step was stopped before the last configuration."),
        "",
        "| variant | batch | one pass: e2e wall p50 | e2e events p50 | device events p50 | device launch p50 "
        f"| separate: WallTimer e2e p50 | {'stand-in timer' if dry else 'CudaEventTimer'} device p50 "
        "| in 50 ms slices: WallTimer e2e p50 | SM MHz per pass |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cfg in data.get("configs", []):
        one, sep = cfg["one_pass"], cfg["separate_passes"]
        clocks = "/".join(str(p.get("sm_clock_mhz_before") or "-") for p in sep.values())
        lines.append(
            f"| {cfg['variant']} | {cfg['batch']} | {one['end_to_end']['wall']['p50_ms']:.3f} "
            f"| {one['end_to_end']['events']['p50_ms']:.3f} | {one['device_only']['events']['p50_ms']:.3f} "
            f"| {one['device_only']['launch']['p50_ms']:.3f} | {sep['wall_end_to_end']['p50_ms']:.3f} "
            f"| {sep['events_device_only']['p50_ms']:.3f} "
            f"| {_num((sep.get('wall_end_to_end_sliced') or {}).get('p50_ms'))} | {clocks} |"
        )
    lines.append("")
    for cfg in data.get("configs", []):
        lines.append(f"- **{cfg['variant']} b{cfg['batch']}**: " + "; ".join(cfg.get("reading", [])))
    return lines


def sweep_device_vs_e2e(outcomes: list[dict[str, Any]]) -> list[str]:
    """The sweep's own two timings per row, where device-only exceeds end-to-end (the oddity, or its absence)."""
    lines = []
    for o in outcomes:
        for sc in ("latency", "throughput"):
            fig = o.get(sc) or {}
            e2e, dev = fig.get("p50_ms"), fig.get("device_p50_ms")
            if isinstance(e2e, (int, float)) and isinstance(dev, (int, float)) and dev > e2e:
                lines.append(f"- {o['recipe']} {sc}: device-only p50 {dev:.3f} ms > end-to-end {e2e:.3f} ms")
    return lines or ["- in the sweep, no row's device-only p50 exceeds its end-to-end p50"]


def write_summary(
    out_dir: Path,
    plan: Plan,
    machine: dict[str, Any],
    wheels: list[dict[str, Any]],
    steps: list[Step],
    outcomes: list[dict[str, Any]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """summary.json (everything) and summary.md (what a person reads first), naming the device and torch."""
    gpu = machine.get("gpu") or {}
    packages = machine.get("packages", {})
    summary = {
        "dry_run": plan.dry,
        "mode": plan.mode,
        "device": plan.device,
        "gpu": gpu.get("name"),
        "gpu_detail": gpu,
        "driver": machine.get("driver"),
        "driver_cuda": machine.get("driver_cuda"),
        "torch": machine.get("torch"),
        "torch_cuda": machine.get("torch_cuda"),
        "cudnn": machine.get("cudnn"),
        "python": machine.get("python"),
        "cpu": machine.get("cpu"),
        "cpu_count": machine.get("cpu_count"),
        "packages": packages,
        "missing_needed": [p for p in NEEDED if packages and not packages.get(p)],
        "wheels": wheels,
        "plan": asdict(plan),
        "steps": [asdict(s) for s in steps],
        "recipes": outcomes,
        **extra,
    }
    (out_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    title = (
        "# GPU check: DRY RUN on CPU (no CUDA device here; the plumbing only, no GPU figure)"
        if plan.dry
        else f"# GPU check on {gpu.get('name')}"
    )
    lines = [
        title,
        "",
        f"- device: {plan.device}"
        + (
            f", {gpu.get('name')} ({gpu.get('sm_count')} SMs, {gpu.get('memory_mib')} MiB)"
            if gpu
            else " (dry run: no GPU)"
        ),
        f"- driver {machine.get('driver') or '-'}, driver CUDA {machine.get('driver_cuda') or '-'}; "
        f"torch {machine.get('torch')} (CUDA {machine.get('torch_cuda') or '-'}, cuDNN {machine.get('cudnn') or '-'}), "
        f"timm {packages.get('timm')}, Python {machine.get('python')}",
        f"- CPU: {machine.get('cpu')}, {machine.get('cpu_count')} logical CPUs",
        f"- model: {plan.model} at {plan.img_size} px, random weights; sweep --quick, {plan.rounds} paired rounds",
        f"- total {extra.get('elapsed_s')} s of the {plan.total_s:.0f} s allowed",
    ]
    if summary["missing_needed"]:
        lines.append(f"- **missing packages the steps import**: {', '.join(summary['missing_needed'])}")
    used = [w for w in wheels if w.get("action") == "unpacked"]
    if wheels:
        have = [w for w in wheels if w.get("action") == "not needed"]
        ignored = [w for w in wheels if w.get("action") == "ignored"]
        text = f"- carried wheels: {len(used)} unpacked ({', '.join(w['wheel'] for w in used) or 'none'})"
        if have:
            text += "; the machine's own kept: " + ", ".join(
                f"{w['why'].removeprefix('the machine has ')} (carried {w['version']})" for w in have
            )
        if ignored:
            text += "; ignored: " + ", ".join(f"{w['wheel']} ({w['why']})" for w in ignored)
        lines.append(text)
    for note in extra.get("notes", []):
        lines.append(f"- {note}")
    lines += ["", "## Steps", "", "| step | status | seconds | budget s | detail |", "|---|---|---|---|---|"]
    for s in steps:
        budget = s.budget_s or "-"
        lines.append(f"| {s.name} | {s.status} | {s.seconds} | {budget} | {s.detail.replace('|', '/')[:300]} |")
    lines += ["", "## Sweep (paired against fp32)", "", *outcome_table(outcomes), ""]
    lines += ["Device-only above end-to-end in the sweep's rows:", *sweep_device_vs_e2e(outcomes), ""]
    lines += [
        "## Device-only vs end-to-end, the same calls both ways (timers.json)",
        "",
        *timers_section(out_dir, plan.dry),
        "",
    ]
    lines += [f"Files: {', '.join(OUTPUT_FILES)}."]
    (out_dir / SUMMARY_MD).write_text("\n".join(lines) + "\n")
    return summary


def write_logs(out_dir: Path, steps: list[Step], run_dir: Path, outcomes: list[dict[str, Any]]) -> None:
    """The tail of every step's output, and of each failed variant's own log: why something failed."""
    parts = []
    for s in steps:
        parts.append(f"===== {s.name}: {s.status} (exit {s.returncode}, {s.seconds} s) =====")
        if s.command:
            parts.append("$ " + " ".join(s.command))
        if s.log:
            parts.append(tail(s.log))
        parts.append("")
    for o in outcomes:
        if o.get("status") == "failed":
            # the sweep's spelling of a recipe as a file name
            stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in o["recipe"])[:80]
            for log in sorted((run_dir / "logs").glob(f"{stem}*.log")):
                parts += [f"===== variant log {log.name} =====", tail(log, 80), ""]
    text = "\n".join(parts)
    (out_dir / LOGS).write_text(text[-2_000_000:])


def prepare_out(out: Path) -> Path:
    out = out.expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
    if foreign:
        raise InputError(f"--out {out} holds other files ({', '.join(foreign[:3])}); give an empty or new folder")
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    return out


def check(args: Any) -> int:
    """The whole check; exit code 0 when every step ran and nothing failed, 1 otherwise."""
    out_dir = prepare_out(Path(args.out))
    keep = Path(args.results).expanduser().absolute() if args.results else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="optbench-gpu-check-", dir=keep))
    (work / "logs").mkdir()
    clock = Clock(60.0 * (args.minutes or 8.0))
    try:
        site = None
        wheels: list[dict[str, Any]] = []
        if args.wheels:
            site = work / "site"
            site.mkdir()
            wheels = unpack_wheels(Path(args.wheels), site)
        env = child_env(work, site)
        listing_proc = started([sys.executable, "-m", "optim", "list"], env)
        help_proc = started([sys.executable, "-m", "bench", "--help"], env)
        unpacked = [w["package"] for w in wheels if w.get("action") == "unpacked"]
        machine = describe_machine(env, started(probe_command(unpacked), env))
        if "torch" not in machine:
            raise InputError(f"torch cannot be imported by {sys.executable}: {machine.get('torch_error') or machine}")
        cuda = bool(machine.get("cuda_available"))
        if args.device == "cuda" and not cuda:
            raise InputError(f"--device cuda, but torch {machine['torch']} on this machine sees no CUDA device")
        plan = make_plan("gpu" if cuda and args.device != "cpu" else "dry", args.minutes)
        clock.total_s = plan.total_s
        notes: list[str] = []
        if plan.dry:
            notes.append("DRY RUN: no CUDA device, so the same steps ran on the CPU with a tiny model")
        _, listing = captured(listing_proc, 120)
        _, help_text = captured(help_proc, 120)
        recipes = tuple(r.strip() for r in args.recipes.split(",") if r.strip()) if args.recipes else plan.recipes
        if not args.recipes and not plan.dry:
            for package, more in WHEN_INSTALLED:
                if (machine.get("packages") or {}).get(package):
                    recipes += more
                    notes.append(f"{package} is installed: {', '.join(more)} added at the end of the sweep")
        if "fp32" not in recipes:
            recipes = ("fp32", *recipes)
        bad = unknown_recipes(recipes, recipe_steps(listing))
        if bad:
            notes.append(f"left out, not a recipe step of python -m optim list here: {', '.join(bad)}")
        serve, serve_note = serve_option(help_text)
        notes.append(serve_note)
        extra_args = tuple(args.sweep_args.split()) if args.sweep_args else ()
        plan = replace(
            plan, recipes=tuple(r for r in recipes if r not in bad), serve=serve, sweep_extra=extra_args,
            rounds=args.rounds or plan.rounds,
        )  # fmt: skip
        setup = Step("setup", status="ok", seconds=round(clock.elapsed(), 1), budget_s=0.0)
        setup.detail = f"torch {machine['torch']}; {len(unpacked)} carried wheel(s) unpacked"
        if machine.get("probe_error"):
            setup.status, setup.detail = "failed", f"the probe failed: {machine['probe_error'][:200]}"
        print(
            f"gpu check ({'DRY RUN on CPU' if plan.dry else plan.device}): torch {machine['torch']}, "
            f"{(machine.get('gpu') or {}).get('name') or 'no GPU'}; {plan.total_s:.0f} s; -> {out_dir}",
            flush=True,
        )
        run_id = f"gpu-check-{plan.mode}"
        steps: list[Step] = [setup]
        outcomes: list[dict[str, Any]] = []

        def sweep() -> Step:
            step, found = run_sweep(plan, env, work, clock, out_dir, run_id)
            outcomes.extend(found)
            return step

        for name, fn in (
            ("timers", lambda: run_timers(plan, env, work, clock, out_dir)),
            ("sweep", sweep),
            ("profile", lambda: run_profile(plan, env, work, clock, out_dir, f"{run_id}-profile")),
            ("pytest", lambda: run_pytest(plan, env, work, clock, out_dir)),
        ):
            print(f"[{clock.elapsed():5.0f} s] {name} ...", flush=True)
            step = fn()
            steps.append(step)
            print(f"[{clock.elapsed():5.0f} s] {name}: {step.status}; {step.detail}"[:400], flush=True)
        run_dir = work / "results" / "runs" / run_id
        for name, default in ((PYTEST_TXT, "pytest -m gpu did not run\n"), (PROFILE_TXT, "profile did not run\n")):
            if not (out_dir / name).exists():
                (out_dir / name).write_text(default)
        if not (out_dir / TIMERS).exists():
            (out_dir / TIMERS).write_text(json.dumps({"error": "the timers step wrote nothing; see logs.txt"}) + "\n")
        write_logs(out_dir, steps, run_dir, outcomes)
        extra = {"elapsed_s": round(clock.elapsed(), 1), "notes": notes, "work": str(work) if keep else None}
        write_summary(out_dir, plan, machine, wheels, steps, outcomes, extra)
        failed = [s for s in steps if s.status != "ok"] + [o for o in outcomes if o["status"] in ("failed",)]
        print(f"[{clock.elapsed():5.0f} s] summary: {out_dir / SUMMARY_MD}" + (" (DRY RUN)" if plan.dry else ""))
        return 1 if failed else 0
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m bench.tools.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", metavar="DIR", help="folder for the (at most 8) files the check writes")
    parser.add_argument("--wheels", metavar="DIR", help="carried wheels to use where the machine lacks the package")
    parser.add_argument(
        "--device", default="auto", help="auto (cuda when torch sees a GPU, else the dry run), cuda, or cpu (dry run)"
    )
    parser.add_argument("--minutes", type=float, help="wall-clock budget of the whole check (default 8; dry run 3)")
    parser.add_argument("--recipes", help=f"comma-separated sweep recipes (default on CUDA: {','.join(GPU_RECIPES)})")
    parser.add_argument("--rounds", type=int, help="paired rounds per variant and scenario (default 10; dry run 5)")
    parser.add_argument("--sweep-args", help="more options for python -m bench, space-separated (e.g. '--serve 4')")
    parser.add_argument(
        "--fetch-wheels", metavar="DIR", help="download the wheels the check carries into DIR with pip, then exit"
    )
    args = parser.parse_args(argv)
    if args.fetch_wheels:
        return fetch_wheels(Path(args.fetch_wheels).expanduser().absolute())
    if not args.out:
        raise InputError("--out DIR is required (make gpu-check OUT=DIR)")
    if args.device not in ("auto", "cuda", "cpu"):
        raise InputError(f"--device must be auto, cuda or cpu, got {args.device!r}")
    if args.minutes is not None and not 0.5 <= args.minutes <= 60:
        raise InputError(f"--minutes must be between 0.5 and 60, got {args.minutes}")
    if args.rounds is not None and args.rounds < 1:
        raise InputError(f"--rounds must be at least 1, got {args.rounds}")
    if args.wheels and not Path(args.wheels).is_dir():
        raise InputError(f"--wheels {args.wheels} is not a folder")
    return check(args)


if __name__ == "__main__":
    run_cli(main)
