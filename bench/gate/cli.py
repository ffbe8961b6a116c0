"""``python -m bench.gate``: fail a pull request on a real slowdown or accuracy drop, and only on a real one.

Two ways to get the two sides:

- ``python -m bench.gate BASELINE CANDIDATE``: files from ``python -m bench`` (``results.jsonl``) or
  ``pytest bench --benchmark-json`` (either side may be either format; BASELINE may be a folder such as
  ``results/baselines/``). Both must come from the same machine (CPU, GPU, threads, torch/ORT/TensorRT)
  unless ``--allow-machine-mismatch``.
- ``python -m bench.gate --ab BASE_REF``: measure BASE_REF and the working tree alternately in this job
  (see :mod:`bench.gate.ab`): the remedy for runner-to-runner noise, which dwarfs a 10% regression.

Exit codes: 0 pass, 1 regression (or a variant that broke), 2 bad input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from bench.gate.config import GateConfig, load_config, parse_alpha, parse_threshold
from bench.gate.inputs import GateInput, load_input, machine_differences, machines_of, same_machine
from bench.gate.report import GateResult, console, write_summary
from bench.gate.series import Series
from bench.gate.stats import Comparison, compare_timing, compare_top1, status_comparison
from data.errors import ArgumentParser, InputError, run_cli
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
    ab.add_argument("--out", help="folder for the pooled results and the summary (default: <results>/gate-ab-<time>)")
    ab.add_argument(
        "--bench-cmd",
        help="benchmark command run in each tree instead of python -m bench --quick; placeholders {python} "
        "{ckpt} {recipes} {run_id} {results}; it must write results.jsonl files under $OPTBENCH_RESULTS",
    )
    ab.add_argument("--keep-worktree", action="store_true", help="leave the base worktree in place (debugging)")
    return p


def _machine_check(base: GateInput, cand: GateInput, pairs: list[tuple[Series, Series]], allow: bool) -> str:
    """Return '' when both sides come from one machine; else refuse (exit 2) or, when allowed, a warning line."""
    diffs: list[str] = []
    for b, c in pairs:
        for mb in b.machines:
            for mc in c.machines:
                if not same_machine(mb, mc):
                    diffs += [d for d in machine_differences(mb, mc) if d not in diffs]
    for side, inp in (("baseline", base), ("candidate", cand)):
        ms = machines_of(inp)
        for i, a in enumerate(ms):
            for other in ms[i + 1 :]:
                if not same_machine(a, other):
                    diffs += [f"{side} mixes machines ({d})" for d in machine_differences(a, other)]
    if not diffs:
        return ""
    text = "; ".join(diffs[:4])
    if not allow:
        raise InputError(
            f"baseline and candidate come from different machines ({text}); timings do not compare across "
            "machines: use a baseline from this machine, A/B mode (--ab), or --allow-machine-mismatch"
        )
    return f"this comparison crosses machines ({text}); timing differences may be the hardware, not the code"


def compare(base: GateInput, cand: GateInput, cfg: GateConfig, allow_machine_mismatch: bool = False) -> GateResult:
    """Match benchmarks by (variant, scenario, device) and judge each; raises InputError when nothing overlaps."""
    keys = list(cand.series) + [k for k in base.series if k not in cand.series]
    comparable = [
        (base.series[k], cand.series[k])
        for k in keys
        if k in base.series and k in cand.series and base.series[k].status == "ok" and cand.series[k].status == "ok"
    ]
    if not comparable:
        raise InputError(
            f"no benchmark is in both files: baseline has {_names(base)}; candidate has {_names(cand)} "
            "(matched by variant, scenario and device)"
        )
    machine_note = _machine_check(base, cand, comparable, allow_machine_mismatch)
    comparisons: list[Comparison] = []
    for k in keys:
        b, c = base.series.get(k), cand.series.get(k)
        if b is None or c is None or b.status != "ok" or c.status != "ok":
            comparisons.append(status_comparison(b, c))
        elif c.metric == "top1":
            comparisons.append(compare_top1(b, c, cfg.top1_budget_for(c.bench_id, c.device)))
        else:
            threshold = cfg.threshold_for(c.bench_id, c.device)
            comparisons.append(compare_timing(b, c, threshold, cfg.alpha, cfg.run_alpha, cfg.paired_alpha))
    single = [b for b, c in comparable if b.metric != "top1" and min(b.sessions, c.sessions) < 2]
    extra = []
    if single:
        extra.append(
            "Caveat: one run on at least one side, so run-to-run spread (10-15% between fresh processes of the same "
            "code, measured on an idle 16-core box) cannot be told apart from a code change; prefer --ab with "
            "--rounds >= 3, or a threshold above that spread."
        )
    order = {"latency": 0, "throughput": 1, "time": 2, "top1": 3}
    comparisons.sort(key=lambda c: (c.device, c.bench_id.rsplit("/", 1)[0], order.get(c.metric, 9)))
    return GateResult(
        comparisons=comparisons,
        baseline=base.path,
        candidate=cand.path,
        alpha=cfg.alpha,
        paired_alpha=cfg.paired_alpha,
        config_source=_config_text(cfg),
        machine_note=machine_note,
        extra=extra,
    )


def _names(inp: GateInput) -> str:
    names = sorted(f"{s.bench_id}@{s.device}" for s in inp.series.values())
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "") if names else "nothing"


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


def report(result: GateResult, summary: Path | None, json_out: Path | None) -> int:
    """Print the table, write the summary files; return the exit code."""
    print(console(result))
    for path in write_summary(result, summary):
        print(f"summary: {path}", file=sys.stderr)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "verdict": "fail" if result.failing else "pass",
            "alpha": result.alpha,
            "machine_note": result.machine_note,
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
    if args.ab:
        if args.baseline or args.candidate:
            raise InputError("--ab measures both sides itself; do not pass BASELINE/CANDIDATE files with it")
        from bench.gate.ab import ABConfig, run_ab

        if args.rounds is not None and args.rounds < 1:
            raise InputError(f"--rounds must be >= 1, got {args.rounds}")
        if (
            any(v is not None for v in (args.model, args.model_kwargs, args.num_classes, args.img_size))
            and not args.ckpt
        ):
            raise InputError("--model, --model-kwargs, --num-classes and --img-size describe --ckpt; pass it too")
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
        )
        base, cand, out_dir = run_ab(ab)
        result = compare(base, cand, cfg, args.allow_machine_mismatch)
        result.extra.append(f"A/B mode: base = {base.path}; head = {cand.path}.")
        summary = Path(args.summary) if args.summary else out_dir / SUMMARY_NAME
        return report(result, summary, Path(args.json_out) if args.json_out else None)
    if not args.baseline or not args.candidate:
        raise InputError("pass BASELINE and CANDIDATE files, or --ab BASE_REF (see --help)")
    if Path(args.candidate).is_dir():
        raise InputError(f"{args.candidate} is a folder; the candidate must be one file")
    cand = load_input(args.candidate)
    base = load_input(args.baseline, prefer_machines=machines_of(cand))
    result = compare(base, cand, cfg, args.allow_machine_mismatch)
    summary = Path(args.summary) if args.summary else Path(args.candidate).parent / SUMMARY_NAME
    return report(result, summary, Path(args.json_out) if args.json_out else None)


if __name__ == "__main__":
    run_cli(main)
