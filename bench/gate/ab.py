"""Same-job A/B: measure the base ref and the working tree on one machine, then gate head vs base.

Why: timings of two runner machines can differ by far more than the regressions we want to catch, so a stored
baseline from another runner can only support a loose threshold. Measured in the same job, both sides share the
hardware and the neighbours.

Default (interleaved): for each recipe, ``--processes`` measurement processes per side are started, each
running its own tree's code (:mod:`bench.run.server`: the base from a temporary git worktree), and they are
timed in alternating short slices for ``--rounds`` rounds (:mod:`bench.run.schedule`). Round r of the base
and round r of the head saw the same machine moment, so the gate tests the per-round ratios
(:func:`bench.gate.stats.compare_paired`). Several processes per side average out the lasting offset each
process carries (memory layout, thread placement), which one process a side would mistake for the code's.

With ``--bench-cmd`` (a custom benchmark), or when the base has no ``bench/serve.py``, whole benchmark
runs alternate instead (base-head, head-base, ...), and the samples of all rounds are pooled per side.

Both sides measure the same checkpoint (resolved once and passed by path), and each side's rows are
written to its own folder under the output folder.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.config import RunConfig
from bench.gate.inputs import GateInput, load_file, merge
from bench.options import quick_run_config
from data.errors import InputError
from models.spec import LoadSpec

DEFAULT_BENCH_CMD = (
    "{python} -m bench {ckpt} {load_args} {data_args} --quick --recipes {recipes} --no-progress --run-id {run_id}"
)


INTERLEAVED_ROUNDS = 20
PROCESS_ROUNDS = 3


@dataclass(frozen=True)
class ABConfig:
    base_ref: str
    rounds: int | None = None  # interleaved rounds (default 20), or whole-run rounds with --bench-cmd (default 3)
    processes: int = 3
    recipes: str = "fp32"
    load: LoadSpec | None = None  # None: the embedded default
    out: Path | None = None
    bench_cmd: str | None = None
    keep_worktree: bool = False
    timeout_s: float = 3600.0
    data: str | None = None  # --data, absolute: each side runs in its own tree's folder


def _git(args: list[str], cwd: Path) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=300)
    except FileNotFoundError:
        raise InputError("A/B mode needs git on PATH") from None
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise InputError(f"git {' '.join(args)} failed: {msg[-1] if msg else proc.returncode}")
    return proc.stdout.strip()


def _git_ok(args: list[str], cwd: Path) -> bool:
    """Whether a git query succeeds (``cat-file -e``: whether a path exists at a commit)."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False, timeout=60).returncode == 0


def repo_root(start: Path | None = None) -> Path:
    return Path(_git(["rev-parse", "--show-toplevel"], start or Path.cwd()))


def _resolve_load(cfg: ABConfig) -> LoadSpec:
    """One way of loading for both sides: the given checkpoint (and options), or the embedded default trained
    (once) by this tree. It is loaded here once, so bad input stops before any worktree exists."""
    import models

    if cfg.bench_cmd and "{ckpt}" not in cfg.bench_cmd and cfg.load is None:
        return LoadSpec(path="")
    if cfg.load is not None:
        models.load(cfg.load)
        return cfg.load
    from models.default import ensure_default_checkpoint

    return LoadSpec(path=str(ensure_default_checkpoint().resolve()))


def _command(cfg: ABConfig, load: LoadSpec, run_id: str, results: Path) -> list[str]:
    template = cfg.bench_cmd or DEFAULT_BENCH_CMD
    values = {
        "python": shlex.quote(sys.executable),
        "ckpt": shlex.quote(load.path or ""),
        "load_args": " ".join(shlex.quote(a) for a in load.to_cli_args()),
        "data_args": f"--data {shlex.quote(cfg.data)}" if cfg.data else "",
        "recipes": shlex.quote(cfg.recipes),
        "run_id": run_id,
        "results": shlex.quote(str(results)),
    }
    try:
        return shlex.split(template.format(**values))
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(
            f"--bench-cmd {template!r}: bad placeholder or quoting ({exc}); use {{python}} {{ckpt}} {{load_args}} "
            "{data_args} {recipes} {run_id} {results}"
        ) from None


def _run_side(
    cfg: ABConfig, tree: Path, side: str, round_no: int, load: LoadSpec, out: Path, rounds: int
) -> list[Path]:
    """One benchmark run of one tree; returns the results.jsonl files it wrote."""
    results = out / side / f"round{round_no}"
    results.mkdir(parents=True, exist_ok=True)
    run_id = f"ab-{side}-{round_no}"
    cmd = _command(cfg, load, run_id, results)
    env = dict(os.environ)
    env["OPTBENCH_RESULTS"] = str(results)
    env["PYTHONPATH"] = str(tree) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log = out / "logs" / f"{run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"A/B round {round_no}/{rounds}: {side} ({tree})", file=sys.stderr)
    start = time.perf_counter()
    with open(log, "w") as fh:
        try:
            proc = subprocess.run(
                cmd, cwd=tree, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=cfg.timeout_s, check=False
            )
        except FileNotFoundError:
            raise InputError(f"benchmark command not found: {cmd[0]}") from None
        except subprocess.TimeoutExpired:
            raise InputError(f"{side} benchmark round {round_no} took over {cfg.timeout_s:.0f}s (log: {log})") from None
    if proc.returncode != 0:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:] or [""]
        raise InputError(f"{side} benchmark exited {proc.returncode} in round {round_no}: {tail[0][:200]} (log: {log})")
    files = sorted(results.rglob("results.jsonl"))
    if not files:
        raise InputError(f"{side} benchmark wrote no results.jsonl under {results} (log: {log})")
    print(f"  {side} done in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    return files


def _run_process_rounds(cfg: ABConfig, trees: dict[str, Path], load: LoadSpec, out: Path) -> dict[str, list[Path]]:
    """Whole benchmark runs alternating base-head, head-base, ...: drift during the job hits both sides alike."""
    rounds = cfg.rounds or PROCESS_ROUNDS
    files: dict[str, list[Path]] = {"base": [], "head": []}
    for round_no in range(1, rounds + 1):
        order = ("base", "head") if round_no % 2 else ("head", "base")
        for side in order:
            files[side] += _run_side(cfg, trees[side], side, round_no, load, out, rounds)
    return files


def _ab_config(cfg: ABConfig, load: LoadSpec, recipe: str, out: Path) -> RunConfig:
    """The run configuration both sides measure: the full timing budget (3 s and 300 calls a scenario, spread over
    the rounds), not the quick smoke run: a slice needs several calls for its median to mean something."""
    return quick_run_config(load, recipe, cfg.timeout_s, "ab", data=cfg.data)


def _run_interleaved(cfg: ABConfig, trees: dict[str, Path], load: LoadSpec, out: Path) -> dict[str, list[Path]]:
    """Per recipe: ``cfg.processes`` processes a side, timed in alternating slices; one results.jsonl a side."""
    from bench.results_io import RESULTS_FILE, append_rows
    from bench.run.client import ServerError
    from bench.run.schedule import PairingPlan
    from bench.run.sides import measure_processes

    rounds = cfg.rounds or INTERLEAVED_ROUNDS
    group = f"ab-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    files = {side: out / side / RESULTS_FILE for side in trees}
    for recipe in [r.strip() for r in cfg.recipes.split(",") if r.strip()]:
        run = _ab_config(cfg, load, recipe, out)
        named = [
            (f"{side}-{i + 1}", run.job(recipe, str(out / side)), trees[side])
            for i in range(cfg.processes)
            for side in ("base", "head")
        ]
        print(f"A/B {recipe}: {rounds} interleaved rounds over {len(named)} processes", file=sys.stderr)
        try:
            rows_by_name = measure_processes(named, PairingPlan(rounds=rounds), out / "logs", cfg.timeout_s)
        except ServerError as exc:
            raise InputError(f"A/B {recipe}: {exc}") from None
        for name, rows in rows_by_name.items():
            side, process = name.split("-")
            for row in rows:
                row["pairing"] = {
                    "session": f"{group}-{recipe}",
                    "side": side,
                    "process": int(process),
                    "rounds": rounds,
                }
            append_rows(files[side], rows)
    return {side: [path] for side, path in files.items()}


def run_ab(cfg: ABConfig) -> tuple[GateInput, GateInput, Path]:
    """Check out ``base_ref`` into a temporary worktree, measure both sides, pool per side.

    Returns (base, head, output folder). The worktree is removed afterwards even when a run fails.
    """
    from data.paths import results_dir

    if cfg.processes < 1:
        raise InputError(f"--processes must be >= 1, got {cfg.processes}")
    if not cfg.bench_cmd:  # our own sweep measures each side: an unknown recipe is bad input, refused before any work
        from bench.run.sweep import validate_recipes

        validate_recipes([r.strip() for r in cfg.recipes.split(",") if r.strip()])
    root = repo_root()
    base_sha = _git(["rev-parse", "--verify", f"{cfg.base_ref}^{{commit}}"], root)
    if not cfg.bench_cmd:  # both sides run the tree's own python -m bench: it must be optbench's tree
        for side, present in (
            ("this working tree", (root / "bench" / "__main__.py").is_file()),
            (cfg.base_ref, _git_ok(["cat-file", "-e", f"{base_sha}:bench/__main__.py"], root)),
        ):
            if not present:
                raise InputError(
                    f"--ab: {side} has no bench/__main__.py, so it is not an optbench tree; --ab compares two commits "
                    "of optbench itself (for your own code, pass --bench-cmd; docs/gate.md)"
                )
    out = cfg.out or results_dir() / f"gate-ab-{time.strftime('%Y%m%d-%H%M%S')}"
    out = out.resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out} exists and is not an empty folder: an A/B run writes a folder of its own")
    out.mkdir(parents=True, exist_ok=True)
    load = _resolve_load(cfg)
    tmp = Path(tempfile.mkdtemp(prefix="optbench-ab-"))
    worktree = tmp / "base"
    _git(["worktree", "add", "--detach", str(worktree), base_sha], root)
    trees = {"base": worktree, "head": root}
    try:
        interleaved = not cfg.bench_cmd and (worktree / "bench" / "run" / "server.py").is_file()
        if not cfg.bench_cmd and not interleaved:
            print(f"{cfg.base_ref} has no bench/run/server.py: alternating whole runs, not slices", file=sys.stderr)
        files = (_run_interleaved if interleaved else _run_process_rounds)(cfg, trees, load, out)
    finally:
        if cfg.keep_worktree:
            print(f"kept the base worktree at {worktree}", file=sys.stderr)
        else:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(worktree)], cwd=root, capture_output=True, check=False
            )
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True, check=False)
    base = merge([load_file(p) for p in files["base"]])
    head = merge([load_file(p) for p in files["head"]])
    mode = "interleaved slices" if interleaved else "alternating runs"
    base.path = f"{cfg.base_ref} ({base_sha[:10]}), {mode}, under {out / 'base'}"
    head.path = f"working tree, {mode}, under {out / 'head'}"
    return base, head, out
