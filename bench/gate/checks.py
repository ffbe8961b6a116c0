"""Whether two sides may be compared at all: the same machine, the same checkpoint, and each figure measured under
the same conditions (the serving bound, say).

Timings do not carry across machines, and a run of other weights is another experiment: comparing two commits of
one's code on the same checkpoint is the normal case, two checkpoints usually a mistake (a baseline recorded with
last month's weights, a retrained default). Either refuses (exit 2) unless its ``--allow-...`` option is given;
then the report carries a warning line saying what differs.
"""

from __future__ import annotations

from bench.gate.inputs import GateInput, machine_differences, machines_of, same_machine
from bench.gate.series import Series, conditions_text
from data.errors import InputError

SHA_SHOWN = 12  # hex digits of a sha256 a message shows


def machine_check(base: GateInput, cand: GateInput, pairs: list[tuple[Series, Series]], allow: bool) -> str:
    """The machine both sides come from (a plain line, or '' when the files name none); else refuse (exit 2) or,
    when allowed, a warning line (it starts with "this comparison crosses machines")."""
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
        return _named(machines_of(base) + machines_of(cand), pairs)
    text = "; ".join(diffs[:4])
    if not allow:
        raise InputError(
            f"baseline and candidate come from different machines ({text}); timings do not compare across "
            "machines: use a baseline from this machine, A/B mode (--ab), or --allow-machine-mismatch"
        )
    return f"this comparison crosses machines ({text}); timing differences may be the hardware, not the code"


def _named(machines: list[dict], pairs: list[tuple[Series, Series]]) -> str:
    """'machine: <CPU (flags), GPU> on both sides': every timing the report shows came from it."""
    if not machines or not any(machines[0].values()):
        return ""
    m = machines[0]
    gpu = f"{m['gpu_name']} with " if m.get("gpu_name") and any(b.device == "cuda" for b, _ in pairs) else ""
    parts = [f"{gpu}{m.get('cpu_model') or 'unknown CPU'}"]
    parts += [f"{m['threads']} threads"] if m.get("threads") else []
    parts += [f"torch {m['torch']}"] if m.get("torch") else []
    return f"machine: {', '.join(parts)} on both sides"


def conditions_check(pairs: list[tuple[Series, Series]]) -> None:
    """Refuse (exit 2) a benchmark measured under different conditions on the two sides: a serving rate at a p99
    bound of 50 ms and one at 8 ms differ because the question did, not the code."""
    for b, c in pairs:
        shared = b.conditions.keys() & c.conditions.keys()  # a file format that does not record one cannot differ
        if any(b.conditions[k] != c.conditions[k] for k in shared):
            raise InputError(
                f"{c.bench_id} on {c.device}: the baseline was measured under {conditions_text(b.conditions)}, the "
                f"candidate under {conditions_text(c.conditions)}; the figures answer different questions: compare "
                "runs measured alike"
            )


def _shas(shas: set[str]) -> str:
    return ", ".join(s[:SHA_SHOWN] for s in sorted(shas))


def checkpoint_check(pairs: list[tuple[Series, Series]], allow: bool) -> tuple[str, bool]:
    """The report's checkpoint line and whether it is a warning; refuses (exit 2) two checkpoints unless allowed.

    Only benchmarks whose both sides recorded a ``checkpoint_sha256`` count (older rows and plain pytest-benchmark
    files do not): ``('', False)`` when none did."""
    recorded = [(b, c) for b, c in pairs if b.checkpoints and c.checkpoints]
    base = {x for b, _ in recorded for x in b.checkpoints}
    cand = {x for _, c in recorded for x in c.checkpoints}
    if not recorded:
        return "", False
    if base == cand and len(base) == 1:
        return f"checkpoint: sha256 {_shas(base)} on both sides", False
    if base == cand:  # both sides pool runs of the same several checkpoints
        text = f"each side mixes checkpoints (sha256 {_shas(base)})"
    else:
        text = f"baseline checkpoint sha256 {_shas(base)}; candidate {_shas(cand)}"
    if not allow:
        raise InputError(
            f"{text}: the two runs measured different checkpoint files, so a difference may be the checkpoint, not "
            "the code; "
            "compare runs of one checkpoint, or pass --allow-other-checkpoint"
        )
    return f"different checkpoints ({text}): differences may be the weights, not the code", True
