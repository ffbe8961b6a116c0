"""The default executor: this machine, one measurement at a time.

The fp32 reference stays warm in its own process(es) for the whole sweep and the other variants are timed
interleaved with it, a group of them at a time sharing its slices (:mod:`bench.run.pairing`). If the reference
cannot start or dies, the remaining variants are measured the unpaired way and their rows say so; the sweep then
ends with exit code 1, because its speedups are not paired ratios. With ``--unpaired`` every variant, fp32
included, is timed alone in its own process.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

from bench.config import Job
from bench.run.client import ServerError
from bench.run.executors import ExecutorSpec, register
from bench.run.pairing import finish_reference, group_size, measure_alone, measure_group, start_reference
from bench.run.process import status_row
from bench.run.stopping import rivals_from_rows


def _noted(rows: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    for row in rows:
        row["note"] = "; ".join(x for x in (row.get("note"), note) if x)
    return rows


def _alone(job: Job, note: str = "") -> list[dict[str, Any]]:
    try:
        rows = measure_alone(job)
    except ServerError as exc:
        return [status_row(job, "failed", str(exc), exc.code)]
    return _noted(rows, note) if note else rows


class LocalExecutor:
    """Measure every job on this machine, one after another."""

    name = "local"

    def check(self) -> None:
        """Nothing to reach: this machine measures."""

    def run(self, variants: Sequence[Job], reference: Job | None, record_reference: bool) -> Iterator[list[dict]]:
        """Rows of each variant as it finishes, then the reference's (when ``record_reference``).

        ``reference=None``: unpaired, every job timed alone.
        """
        if reference is None:
            for job in variants:
                yield _alone(job)
            return
        if not variants:  # nothing to pair with: the reference alone (a resumed run that only lacks fp32)
            if record_reference:
                yield _alone(reference)
            return
        ref, ref_note = None, ""
        try:
            ref, replica_note = start_reference(reference)
            if replica_note:
                print(f"fp32 reference: {replica_note}", file=sys.stderr)
        except ServerError as exc:
            ref_note = f"fp32 reference failed ({exc}); measured unpaired"
            if record_reference:
                yield [status_row(reference, "failed", str(exc), exc.code)]
        measured: list[dict[str, Any]] = []  # the rivals a later variant's rounds may stop against
        size = group_size(variants)
        try:
            for start in range(0, len(variants), size):
                group = variants[start : start + size]
                if ref is None:
                    for job in group:
                        yield _alone(job, ref_note)
                    continue
                try:
                    results = measure_group(ref, group, rivals_from_rows(measured))
                except ServerError as exc:  # only the reference failing raises: measure the rest unpaired
                    ref.close()
                    ref, ref_note = None, f"fp32 reference process died ({exc}); measured unpaired"
                    if record_reference:
                        yield [status_row(reference, "failed", f"the reference process died: {exc}", exc.code)]
                    for job in group:
                        yield _alone(job, ref_note)
                    continue
                for job, result in zip(group, results, strict=True):
                    if isinstance(result, ServerError):
                        yield [status_row(job, "failed", str(result), result.code)]
                        continue
                    measured.extend(result)
                    yield result
        except BaseException:
            if ref is not None:
                ref.close()
            raise
        if ref is not None:
            try:
                rows = finish_reference(ref, replica_note)
            except ServerError as exc:
                rows = [status_row(reference, "failed", str(exc), exc.code)]
            if record_reference:
                yield rows or _alone(reference)


register(ExecutorSpec("local", "this machine, one measurement at a time", lambda cfg: LocalExecutor()))
