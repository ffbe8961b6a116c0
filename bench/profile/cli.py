"""``python -m bench.profile``: profile the data pipeline, the training step and inference, then say what to do.

For each target (``data``, ``train``, ``infer``) it runs the requested profilers (cProfile, the PyTorch
profiler, line_profiler) and then times the loop with no profiler attached to give a measured verdict:
how much of each step waits for data, and, when the input pipeline is the bottleneck, what the obvious
fixes (more workers, pin_memory, persistent_workers, channels_last) do, measured on the spot.
Everything lands in ``results/runs/<run-id>/profile/``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.errors import ArgumentParser, InputError, run_cli
from optim.options import add_build_arguments, add_checkpoint_arguments, check_build_options

TARGETS = ("data", "train", "infer")  # of a checkpoint; --step adds "step", the user's own loop
PROFILERS = ("cprofile", "torch", "line")
QUICK_STEPS = 3


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m bench.profile",
        description="Profile the data pipeline, train step and inference of a checkpoint; print a measured verdict.",
    )
    add_checkpoint_arguments(p)
    add_build_arguments(p, calib=False)
    p.add_argument("--target", help=f"comma-separated: {', '.join(TARGETS)} (default: all)")
    p.add_argument(
        "--step",
        metavar="PKG.MOD:FACTORY",
        help="profile your own loop instead of a checkpoint: FACTORY() returns step() or (step, data)",
    )
    p.add_argument(
        "--profiler",
        default=None,
        help=f"comma-separated: {', '.join(PROFILERS)} (default: all; line is skipped with a note if not installed)",
    )
    p.add_argument("--steps", type=int, default=10, help="profiled and timed steps per target (default 10)")
    p.add_argument(
        "--torch-schedule",
        metavar="W,WU,A,R",
        help="torch.profiler schedule WAIT,WARMUP,ACTIVE,REPEAT (default 1,1,STEPS,1)",
    )
    p.add_argument("--recipe", default="fp32", help="variant the infer target runs (any recipe; default fp32)")
    p.add_argument("--batch-size", type=int, default=32, help="loader batch size (default 32)")
    p.add_argument(
        "--num-workers", type=int, default=0, help="DataLoader workers (default 0: the profilers see the data code)"
    )
    p.add_argument("--with-stack", action="store_true", help="record Python stacks in the torch profiler")
    p.add_argument("--no-fixes", action="store_true", help="only measure; do not try input-pipeline fixes")
    p.add_argument("--top", type=int, default=15, help="rows in each top-N table (default 15)")
    p.add_argument("--run-id", help="name of the run directory under results/runs/")
    return p


def parse_choices(text: str, choices: Sequence[str], option: str) -> list[str]:
    """``"train,data"`` -> ``["train", "data"]`` in the canonical order; unknown names are an InputError."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError(f"{option} is empty; choose from: {', '.join(choices)}")
    unknown = [n for n in names if n not in choices]
    if unknown:
        raise InputError(f"unknown {option.lstrip('-')} {unknown[0]!r}; choose from: {', '.join(choices)}")
    return [c for c in choices if c in names]


def _check_step_alone(args: Any) -> None:
    """``--step`` profiles the user's own loop: checkpoint targets and options have nothing to act on."""
    if args.target is not None and args.target.strip() != "step":
        raise InputError("--step runs your own step (target 'step'); --target data/train/infer need a checkpoint")
    given = [f"--{n.replace('_', '-')}" for n in ("model", "data", "num_classes", "img_size") if getattr(args, n)]
    if args.ckpt or given:
        what = "a checkpoint" if args.ckpt else " and ".join(given)
        raise InputError(f"--step profiles your own step, which sets up its own model and data; drop {what}")


def _validate(args: Any) -> dict[str, Any]:
    from bench.profile.lineprof import EXTRA_HINT, line_profiler_available, require_line_profiler
    from bench.profile.torchprof import TorchSchedule

    if args.step:
        _check_step_alone(args)
        targets = ["step"]
    else:
        targets = parse_choices(",".join(TARGETS) if args.target is None else args.target, TARGETS, "--target")
    notes: list[str] = []
    if args.profiler is None:
        profilers = list(PROFILERS)
        if not line_profiler_available():
            profilers.remove("line")
            notes.append(f"line_profiler is not installed, so its report is skipped ({EXTRA_HINT})")
    else:
        profilers = parse_choices(args.profiler, PROFILERS, "--profiler")
        if "line" in profilers:
            require_line_profiler()
    for name in ("steps", "batch_size", "top"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.num_workers < 0:
        raise InputError(f"--num-workers must be >= 0, got {args.num_workers}")
    check_build_options(args)
    if args.quick:  # a smoke run, as --quick is everywhere: a few steps per target
        args.steps = min(args.steps, QUICK_STEPS)
    if "train" in targets and args.batch_size < 2:
        raise InputError("--batch-size 1 cannot run train steps (BatchNorm needs more than one sample); use >= 2")
    if args.torch_schedule:
        sched = TorchSchedule.parse(args.torch_schedule)
    else:
        sched = TorchSchedule(wait=1, warmup=1, active=args.steps, repeat=1)
    recipe = None
    if "infer" in targets:
        from optim.recipe import parse

        recipe = parse(args.recipe)
        reason = recipe.unavailable_reason(args.device)
        if reason:
            raise InputError(f"recipe {recipe} cannot run on {args.device} here: {reason}")
    run_id = None
    if args.run_id:
        from bench.run.run_dir import check_run_id

        run_id = check_run_id(args.run_id)  # a bad name stops here, before the checkpoint loads
    return {
        "targets": targets,
        "profilers": profilers,
        "schedule": sched,
        "recipe": recipe,
        "notes": notes,
        "run_id": run_id,
    }


def say(text: str = "") -> None:
    print(text, flush=True)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _stamp(tag: str) -> str:
    safe_tag = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in tag or "model")[:40]
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{safe_tag}-profile"


def _out_dir(run_id: str) -> Path:
    """``<run>/profile``; one that already holds a profile is refused: its traces would mix with the new ones in one
    TensorBoard run, and its verdict would be replaced."""
    from bench.run.run_dir import has_content, run_dir
    from data.errors import InputError

    out_dir = run_dir(run_id) / "profile"
    if has_content(out_dir):
        raise InputError(f"--run-id {run_id}: {out_dir} already holds a profile; pick a new --run-id")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _base_conf(args: Any, checked: dict[str, Any]) -> dict[str, Any]:
    return {
        "targets": checked["targets"],
        "profilers": checked["profilers"],
        "steps": args.steps,
        "torch_schedule": vars(checked["schedule"]),
    }


def _setup_step(args: Any, checked: dict[str, Any]):
    """Call the user's factory, make the run directory; yields the one ``step`` target."""
    import torch

    from bench.profile.user_step import load_user_step, user_workload
    from models.machine import default_threads

    torch.set_num_threads(args.threads or default_threads())
    user = load_user_step(args.step)
    out_dir = _out_dir(checked["run_id"] or _stamp(args.step.rsplit(":", 1)[-1]))
    conf = {"step": args.step, "device": args.device, "threads": torch.get_num_threads(), **_base_conf(args, checked)}
    (out_dir / "profile_config.json").write_text(json.dumps(conf, indent=2))
    data = "its own data" if user.data is None else type(user.data).__name__
    log(f"profiling {args.step} on {data} ({args.device}, {conf['threads']} threads) -> {out_dir}")
    return out_dir, conf, {"step": lambda: (user_workload(user, args.device), None, None)}


def _setup_checkpoint(args: Any, checked: dict[str, Any]):
    """Load the checkpoint and data, make the run directory and its configuration; returns a builder per target."""
    import torch

    import data
    from bench.options import run_config_from_args
    from bench.profile.targets import checkpoint_workload
    from optim.options import load_checked

    load, loaded = load_checked(args)
    info = loaded.info
    recipe = str(checked["recipe"] or "fp32")
    run_id = checked["run_id"] or _stamp(info.arch)
    run_cfg = run_config_from_args(args, run_id=run_id, recipes=(recipe,), checked=(load, loaded))
    torch.set_num_threads(run_cfg.threads)
    spec = run_cfg.data_spec
    loader_cfg = data.LoaderConfig(batch_size=args.batch_size, num_workers=args.num_workers)
    bundle = data.build(spec, info.data_config, loader_cfg, run_cfg.data_dir)
    out_dir = _out_dir(run_cfg.run_id)
    conf = {
        "run": run_cfg.to_dict(),
        "recipe": str(checked["recipe"] or "fp32"),
        **_base_conf(args, checked),
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
    }
    (out_dir / "profile_config.json").write_text(json.dumps(conf, indent=2))
    log(
        f"profiling {info.arch} on {spec} ({args.device}, {run_cfg.threads} threads, batch {args.batch_size}, "
        f"{args.num_workers} workers): targets {', '.join(checked['targets'])}; "
        f"profilers {', '.join(checked['profilers'])} -> {out_dir}"
    )

    def builder(target: str):
        def build():
            workload, model = checkpoint_workload(
                target, loaded, bundle, run_cfg, checked["recipe"], args.device, out_dir
            )
            return workload, model, loaded

        return build

    return out_dir, conf, {target: builder(target) for target in checked["targets"]}


def _run_profilers(target: str, workload, checked: dict[str, Any], args: Any, out_dir: Path) -> dict[str, Any]:
    """The requested profilers over ``workload``; returns the files each wrote."""
    from bench.profile.cprof import run_cprofile
    from bench.profile.lineprof import run_line_profiler
    from bench.profile.torchprof import run_torch_profiler

    files: dict[str, Any] = {}
    if "cprofile" in checked["profilers"]:
        log(f"[{target}] cProfile, {args.steps} steps ...")
        res = run_cprofile(workload, args.steps, out_dir, args.top)
        say(res.tables)
        say(f"view: snakeviz {res.prof_path}    (full table: {res.text_path})")
        files.update(cprofile=str(res.prof_path), cprofile_txt=str(res.text_path))
    if "torch" in checked["profilers"]:
        log(f"[{target}] torch.profiler, {checked['schedule'].total_steps} steps ...")
        res = run_torch_profiler(workload, checked["schedule"], out_dir, args.with_stack, args.top)
        say(res.table)
        say(f"traces: {res.trace_dir} ({len(res.traces)} file(s)); open in https://ui.perfetto.dev or with")
        say(f"        tensorboard --logdir {out_dir.parent.parent}")
        files.update(torch_trace_dir=str(res.trace_dir), torch_traces=[str(t) for t in res.traces])
        files["torch_table"] = str(res.table_path)
        if res.stacks_path:
            files["torch_stacks"] = str(res.stacks_path)
    if "line" in checked["profilers"]:
        log(f"[{target}] line_profiler, {args.steps} steps ...")
        res = run_line_profiler(workload, args.steps, out_dir)
        say(res.summary)
        say(f"view: python -m line_profiler -u 1e-3 {res.lprof_path}    (report: {res.text_path})")
        files.update(lprof=str(res.lprof_path), lprof_txt=str(res.text_path), line_functions=list(res.functions))
    return files


def main(argv: Sequence[str] | None = None) -> int:
    from bench.profile.targets import fix_table, measure_verdict

    args = build_parser().parse_args(argv)
    checked = _validate(args)
    for note in checked["notes"]:
        log(f"note: {note}")
    out_dir, conf, builders = (_setup_step if args.step else _setup_checkpoint)(args, checked)
    verdicts = []
    outputs: dict[str, dict[str, Any]] = {}
    for target, build in builders.items():
        say(f"\n===== {target} =====")
        workload, model, loaded = build()
        for note in workload.notes:
            say(f"note: {note}")
        outputs[target] = _run_profilers(target, workload, checked, args, out_dir)
        log(f"[{target}] timing {args.steps} steps with no profiler attached ...")
        verdict = measure_verdict(target, workload, model, loaded, args.steps, not args.no_fixes, log)
        workload.close()
        verdicts.append(verdict)
        say(f"verdict: {verdict.summary}")
        if table := fix_table(verdict):
            say(table)
    import torch

    from models.machine import fingerprint, hardware_kind

    machine = fingerprint(args.device, torch.get_num_threads())
    measured_on = f"Measured on {hardware_kind(machine, args.device)}, {machine.get('threads')} threads."
    summary: dict[str, Any] = {"config": conf, "outputs": outputs, "verdicts": [v.to_dict() for v in verdicts]}
    summary["machine"] = machine
    (out_dir / "verdict.json").write_text(json.dumps(summary, indent=2, default=str))
    (out_dir / "verdict.txt").write_text("\n".join(v.summary for v in verdicts) + f"\n{measured_on}\n")
    say("\n===== verdict =====")
    say(measured_on)
    for v in verdicts:
        say(v.summary)
    say(f"\nall outputs: {out_dir} (verdict.json, verdict.txt)")
    return 0


if __name__ == "__main__":
    run_cli(main)
