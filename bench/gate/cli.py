"""``python -m bench.gate``: fail a pull request on a real slowdown or accuracy drop, and only on a real one.

Two ways to get the two sides:

- ``python -m bench.gate BASELINE CANDIDATE``: files from ``python -m bench`` (``results.jsonl``) or
  ``pytest bench --benchmark-json`` (either side may be either format; BASELINE may be a folder such as
  ``results/baselines/``). Both must come from the same machine (CPU, GPU, threads, torch/ORT/TensorRT)
  unless ``--allow-machine-mismatch``, and from the same checkpoint unless ``--allow-other-checkpoint``.
- ``python -m bench.gate --ab BASE_REF``: measure BASE_REF and the working tree alternately in this job
  (see :mod:`bench.gate.ab`): the remedy for runner-to-runner noise, which dwarfs a 10% regression.

Exit codes: 0 pass, 1 regression (or a variant that broke), 2 bad input.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from bench.gate.checks import checkpoint_check, conditions_check, machine_check
from bench.gate.config import GateConfig, load_config, parse_alpha, parse_threshold
from bench.gate.inputs import GateInput, load_input, machines_of
from bench.gate.match import matched, order_key
from bench.gate.report import GateResult, console, write_summary
from bench.gate.series import BUDGET, SAMPLES, VALUE, Series
from bench.gate.stats import SKIPPED, Comparison, compare_timing
from bench.gate.values import compare_top1, compare_value, status_comparison
from data.errors import ArgumentParser, InputError, run_cli
from data.paths import absolute
from models.cli_args import MODEL_HELP, load_spec

SUMMARY_NAME = "gate-summary.md"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m bench.gate",
        description="Compare a candidate benchmark run against a baseline; exit 1 on a significant regression.",
    )
    p.add_argument("baseline", nargs="?", help="results.jsonl, pytest-benchmark JSON, or a folder of them")
    p.add_argument("candidate", nargs="?", help="results.jsonl or pytest-benchmark JSON of the change under test")
    p.add_argument("--threshold", help="timing limit for every benchmark, e.g. 5%% (default: pyproject, else 5%%)")
    p.add_argument(
        "--top1-budget", type=float, help="points of top-1 a variant may lose (default: pyproject, else 1.0)"
    )
    p.add_argument("--alpha", help="significance level of the one-sided Mann-Whitney U test (default 0.001)")
    p.add_argument("--config", help="pyproject.toml to read [tool.optbench.gate] from (default: nearest one)")
    p.add_argument("--allow-machine-mismatch", action="store_true", help="compare files from different machines")
    p.add_argument(
        "--allow-other-checkpoint",
        action="store_true",
        help="compare runs of different checkpoints (checkpoint_sha256 differs); refused otherwise",
    )
    p.add_argument("--summary", help=f"Markdown summary path (default: {SUMMARY_NAME} next to the candidate)")
    p.add_argument("--json", dest="json_out", help="also write the verdicts as JSON here")
    ab = p.add_argument_group("same-job A/B mode")
    ab.add_argument("--ab", metavar="BASE_REF", help="benchmark git ref BASE_REF against the working tree, alternately")
    ab.add_argument(
        "--rounds",
        type=int,
        help="interleaved rounds: each times one slice of every process (default 20); with --bench-cmd, whole "
        "runs of each side (default 3)",
    )
    ab.add_argument("--processes", type=int, default=3, help="measurement processes per side (default 3)")
    ab.add_argument("--recipes", default="fp32", help="recipes for the A/B quick benchmark (default fp32)")
    ab.add_argument("--ckpt", help="checkpoint both sides measure (default: the embedded default, trained once)")
    ab.add_argument("--model", help="with --ckpt: " + MODEL_HELP)
    ab.add_argument("--model-kwargs", help="with --ckpt: arguments of a --model factory")
    ab.add_argument("--num-classes", type=int, help="with --ckpt: class count (checked against the checkpoint)")
    ab.add_argument("--img-size", type=int, help="with --ckpt: input resolution")
    ab.add_argument(
        "--data", help="with --ckpt: the images it was trained on (ImageFolder, digits, torch/<name>), as bench takes"
    )
    ab.add_argument("--out", help="folder for the pooled results and the summary (default: <results>/gate-ab-<time>)")
    ab.add_argument(
        "--bench-cmd",
        help="benchmark command run in each tree instead of python -m bench --quick; placeholders {python} "
        "{ckpt} {load_args} {data_args} {recipes} {run_id} {results}; it must write results.jsonl files under "
        "$OPTBENCH_RESULTS",
    )
    ab.add_argument("--keep-worktree", action="store_true", help="leave the base worktree in place (debugging)")
    return p


def _judge(b: Series | None, c: Series | None, cfg: GateConfig) -> Comparison:
    """One benchmark's verdict, by what its scenario keeps: samples (ratio and test), one value, or top-1."""
    if b is None or c is None or b.status != "ok" or c.status != "ok":
        return status_comparison(b, c)
    if c.judged_by == BUDGET:
        return compare_top1(b, c, cfg.top1_budget_for(c.bench_id, c.device))
    threshold = cfg.threshold_for(c.bench_id, c.device)
    if c.judged_by == VALUE or b.judged_by == VALUE:
        return compare_value(b, c, threshold)
    return compare_timing(b, c, threshold, cfg.alpha, cfg.run_alpha, cfg.paired_alpha)


def compare(
    base: GateInput,
    cand: GateInput,
    cfg: GateConfig,
    allow_machine_mismatch: bool = False,
    allow_other_checkpoint: bool = False,
) -> GateResult:
    """Match benchmarks by (variant, scenario, device) and judge each; raises InputError when nothing overlaps or
    nothing could be measured on both sides."""
    pairs = matched(base, cand)
    comparable = [(b, c) for b, c in pairs if b is not None and c is not None and b.status == c.status == "ok"]
    machine_note = machine_check(base, cand, comparable, allow_machine_mismatch)
    checkpoint_note, checkpoint_warning = checkpoint_check(comparable, allow_other_checkpoint)
    conditions_check(comparable)
    comparisons = [_judge(b, c, cfg) for b, c in pairs]
    if not comparable and not any(c.failing for c in comparisons):
        both = [c for c in comparisons if c.verdict == SKIPPED]
        shown = "; ".join(f"{c.bench_id}@{c.device} ({c.note})" for c in both[:3])
        raise InputError(f"nothing to compare: no benchmark ran in both files ({len(both)} skipped: {shown})")
    single = [b for b, c in comparable if b.judged_by == SAMPLES and min(b.sessions, c.sessions) < 2 and not b.pairing]
    extra = []
    if base.path and cand.path and Path(base.path).resolve() == Path(cand.path).resolve():
        extra.append("Note: baseline and candidate are the same file, so every change is zero by construction.")
    if single:
        extra.append(
            "Caveat: one run on at least one side, so the run-to-run spread between fresh processes of the same "
            "code (docs/gate.md) cannot be told apart from a code change; prefer --ab with --rounds >= 3, or a "
            "threshold above that spread."
        )
    comparisons.sort(key=lambda c: order_key(c.bench_id, c.device, c.metric))
    return GateResult(
        comparisons=comparisons,
        baseline=base.path,
        candidate=cand.path,
        alpha=cfg.alpha,
        paired_alpha=cfg.paired_alpha,
        config_source=_config_text(cfg),
        machine_note=machine_note,
        checkpoint_note=checkpoint_note,
        checkpoint_warning=checkpoint_warning,
        extra=extra,
    )


def _config_text(cfg: GateConfig) -> str:
    thr = cfg.threshold_override if cfg.threshold_override is not None else cfg.threshold
    src = "--threshold" if cfg.threshold_override is not None else cfg.source
    extra = (
        f", {len(cfg.thresholds)} per-benchmark threshold(s)"
        if cfg.thresholds and cfg.threshold_override is None
        else ""
    )
    budget = cfg.top1_override if cfg.top1_override is not None else cfg.top1_budget
    return (
        f"threshold {thr * 100:g}% ({src}{extra}), alpha {cfg.alpha:g}, run-level alpha {cfg.run_alpha:g}, "
        f"paired alpha {cfg.paired_alpha:g}, "
        f"top-1 budget {budget:g} pt"
    )


def config_from_args(args) -> GateConfig:
    cfg = load_config(args.config)
    if args.threshold is not None:
        cfg.threshold_override = parse_threshold(args.threshold, "--threshold")
    if args.alpha is not None:
        cfg.alpha = parse_alpha(args.alpha, "--alpha")
    if args.top1_budget is not None:
        if not args.top1_budget >= 0:
            raise InputError(f"--top1-budget must be >= 0 points, got {args.top1_budget:g}")
        cfg.top1_override = args.top1_budget
    return cfg


SUMMARY_HEAD = "## Benchmark gate: "  # how a summary the gate wrote begins (bench.gate.report.markdown)


def _is_gate_output(path: Path, kind: str) -> bool:
    """Whether ``path`` holds what the gate itself wrote earlier (the only file it may replace)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    if kind == "--summary":
        return head.startswith(SUMMARY_HEAD.encode())
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and {"verdict", "comparisons"} <= set(doc)


def check_output(path: Path | None, kind: str) -> Path | None:
    """Refuse, before any work, an output path that would destroy something: a folder, a folder that does not
    exist (the gate creates none), or a file that is not an earlier output of the gate (a checkpoint, a run's
    ``results.jsonl``)."""
    if path is None:
        return None
    path = absolute(path)
    if path.is_dir():
        raise InputError(f"{kind} {path} is a folder; name a file")
    if not path.parent.is_dir():
        raise InputError(f"{kind} {path}: folder {path.parent} does not exist; create it first")
    if path.exists() and not _is_gate_output(path, kind):
        raise InputError(f"{kind} {path} exists and is not an earlier gate output; choose another path")
    return path


def report(result: GateResult, summary: Path | None, json_out: Path | None) -> int:
    """Print the table, write the summary files; return the exit code."""
    print(console(result))
    for path in write_summary(result, summary):
        print(f"summary: {path}", file=sys.stderr)
    if json_out is not None:
        payload = {
            "verdict": "fail" if result.failing else "pass",
            "alpha": result.alpha,
            "machine_note": result.machine_note,
            "checkpoint_note": result.checkpoint_note,
            "baseline": result.baseline,
            "candidate": result.candidate,
            "comparisons": [asdict(c) for c in result.comparisons],
        }
        json_out.write_text(json.dumps(payload, indent=2, default=str))
        print(f"verdicts: {json_out}", file=sys.stderr)
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    summary_out = check_output(Path(args.summary), "--summary") if args.summary else None
    json_out = check_output(Path(args.json_out), "--json") if args.json_out else None
    if args.ab:
        if args.baseline or args.candidate:
            raise InputError("--ab measures both sides itself; do not pass BASELINE/CANDIDATE files with it")
        from bench.gate.ab import ABConfig, run_ab
        from data.loaders import resolve_spec

        if args.rounds is not None and args.rounds < 1:
            raise InputError(f"--rounds must be >= 1, got {args.rounds}")
        fewest = math.floor(-math.log2(cfg.paired_alpha)) + 1  # a one-sided signed-rank p is at least 2**-rounds
        if args.rounds is not None and not args.bench_cmd and args.rounds < fewest:
            raise InputError(
                f"--rounds {args.rounds}: the paired test on so few round ratios cannot reach p < "
                f"{cfg.paired_alpha:g}, so no slowdown could fail the gate; use at least {fewest} (default 20)"
            )
        if (
            any(v is not None for v in (args.model, args.model_kwargs, args.num_classes, args.img_size, args.data))
            and not args.ckpt
        ):
            raise InputError(
                "--model, --model-kwargs, --num-classes, --img-size and --data describe --ckpt; pass it too"
            )
        ab = ABConfig(
            base_ref=args.ab,
            rounds=args.rounds,
            processes=args.processes,
            recipes=args.recipes,
            load=load_spec(args.ckpt, args.model, args.model_kwargs, args.num_classes, args.img_size)
            if args.ckpt
            else None,
            out=Path(args.out) if args.out else None,
            bench_cmd=args.bench_cmd,
            keep_worktree=args.keep_worktree,
            data=resolve_spec(args.data) if args.data else None,  # each side runs in its own tree's folder
        )
        base, cand, out_dir = run_ab(ab)
        # Both sides were handed one checkpoint: a different hash would mean the two trees hash differently,
        # worth the warning line, not a refused required check.
        result = compare(base, cand, cfg, args.allow_machine_mismatch, allow_other_checkpoint=True)
        result.extra.append(f"A/B mode: base = {base.path}; head = {cand.path}.")
        return report(result, summary_out or out_dir / SUMMARY_NAME, json_out)
    if not args.baseline or not args.candidate:
        raise InputError("pass BASELINE and CANDIDATE files, or --ab BASE_REF (see --help)")
    if Path(args.candidate).is_dir():
        raise InputError(f"{args.candidate} is a folder; the candidate must be one file")
    summary = summary_out or check_output(Path(args.candidate).parent / SUMMARY_NAME, "--summary")
    cand = load_input(args.candidate)
    base = load_input(args.baseline, prefer_machines=machines_of(cand))
    result = compare(base, cand, cfg, args.allow_machine_mismatch, args.allow_other_checkpoint)
    return report(result, summary, json_out)


if __name__ == "__main__":
    run_cli(main)
