"""Same-job A/B: measure the base ref and the working tree alternately on one machine, then gate head vs base.

Why: timings of two runner VMs differ by far more than the regressions we want to catch (26% between VMs
against 0.3% within one job, fast_mail_parser PR 128), so a stored baseline from another runner can only
support a loose threshold. Measured in the same job, both sides share the hardware, the neighbours and
the thermal state. Rounds alternate the order (base-head, head-base, ...), so a drift during the job
(a neighbour starting, the CPU heating up) hits both sides equally instead of the side that runs last.

Both sides measure the same checkpoint (resolved once and passed by path), each run writes into its own
``OPTBENCH_RESULTS`` folder, and the samples of all rounds are pooled per side.
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

from bench.gate_inputs import GateInput, load_file, merge
from models.errors import InputError

DEFAULT_BENCH_CMD = "{python} -m bench {ckpt} --quick --recipes {recipes} --no-progress --run-id {run_id}"


@dataclass(frozen=True)
class ABConfig:
    base_ref: str
    rounds: int = 3
    recipes: str = "fp32"
    ckpt: str | None = None
    out: Path | None = None
    bench_cmd: str | None = None
    keep_worktree: bool = False
    timeout_s: float = 3600.0


def _git(args: list[str], cwd: Path) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=300)
    except FileNotFoundError:
        raise InputError("A/B mode needs git on PATH") from None
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise InputError(f"git {' '.join(args)} failed: {msg[-1] if msg else proc.returncode}")
    return proc.stdout.strip()


def repo_root(start: Path | None = None) -> Path:
    return Path(_git(["rev-parse", "--show-toplevel"], start or Path.cwd()))


def _resolve_ckpt(cfg: ABConfig) -> str:
    """One checkpoint for both sides: the given one, or the embedded default trained (once) by this tree."""
    if cfg.ckpt:
        path = Path(cfg.ckpt)
        if not path.is_file():
            raise InputError(f"checkpoint not found: {path}")
        return str(path.resolve())
    if cfg.bench_cmd and "{ckpt}" not in cfg.bench_cmd:
        return ""
    from models.default import ensure_default_checkpoint

    return str(ensure_default_checkpoint().resolve())


def _command(cfg: ABConfig, ckpt: str, run_id: str, results: Path) -> list[str]:
    template = cfg.bench_cmd or DEFAULT_BENCH_CMD
    values = {
        "python": shlex.quote(sys.executable),
        "ckpt": shlex.quote(ckpt),
        "recipes": shlex.quote(cfg.recipes),
        "run_id": run_id,
        "results": shlex.quote(str(results)),
    }
    try:
        return shlex.split(template.format(**values))
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(
            f"--bench-cmd {template!r}: bad placeholder or quoting ({exc}); use {{python}} {{ckpt}} "
            "{recipes} {run_id} {results}"
        ) from None


def _run_side(cfg: ABConfig, tree: Path, side: str, round_no: int, ckpt: str, out: Path) -> list[Path]:
    """One benchmark run of one tree; returns the results.jsonl files it wrote."""
    results = out / side / f"round{round_no}"
    results.mkdir(parents=True, exist_ok=True)
    run_id = f"ab-{side}-{round_no}"
    cmd = _command(cfg, ckpt, run_id, results)
    env = dict(os.environ)
    env["OPTBENCH_RESULTS"] = str(results)
    env["PYTHONPATH"] = str(tree) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log = out / "logs" / f"{run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"A/B round {round_no}/{cfg.rounds}: {side} ({tree})", file=sys.stderr)
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


def run_ab(cfg: ABConfig) -> tuple[GateInput, GateInput, Path]:
    """Check out ``base_ref`` into a temporary worktree, run both sides alternately, pool per side.

    Returns (base, head, output folder). The worktree is removed afterwards even when a run fails.
    """
    from models.default import results_dir

    root = repo_root()
    base_sha = _git(["rev-parse", "--verify", f"{cfg.base_ref}^{{commit}}"], root)
    out = cfg.out or results_dir() / f"gate-ab-{time.strftime('%Y%m%d-%H%M%S')}"
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    ckpt = _resolve_ckpt(cfg)
    tmp = Path(tempfile.mkdtemp(prefix="optbench-ab-"))
    worktree = tmp / "base"
    _git(["worktree", "add", "--detach", str(worktree), base_sha], root)
    files: dict[str, list[Path]] = {"base": [], "head": []}
    try:
        for round_no in range(1, cfg.rounds + 1):
            order = ("base", "head") if round_no % 2 else ("head", "base")  # ABBA...: drift hits both sides alike
            for side in order:
                tree = worktree if side == "base" else root
                files[side] += _run_side(cfg, tree, side, round_no, ckpt, out)
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
    base.path = f"{cfg.base_ref} ({base_sha[:10]}), {len(files['base'])} run(s) under {out / 'base'}"
    head.path = f"working tree, {len(files['head'])} run(s) under {out / 'head'}"
    return base, head, out
