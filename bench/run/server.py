"""``python -m bench.run.server --log FILE``: one variant held warm in its own process, timed on request.

Every measurement process of optbench is one of these, whether it is timed in interleaved slices against the
fp32 reference, alone from start to end (``--unpaired``), by the gate's A/B mode or on a cluster node. One
process per variant stays the rule (no shared Inductor/dynamo caches, no shared CUDA context); the coordinator
(:mod:`bench.run.client`) decides when each one is timed.

Protocol: one JSON object per line on stdin, one reply per line on the original stdout; everything the
libraries print goes to ``--log``. Commands:

- ``{"cmd": "ping"}``: answers ``{"ok": true, "protocol": N}`` once torch and timm are imported (done before
  reading commands, so a coordinator can import in a second process while the first is still idle).
- ``{"cmd": "start", "job": {...}}``: build the variant (:func:`bench.run.process.prepare`), warm every scenario
  up (``"warm": false``: at its first slice instead), pin the threads. With ``"load": DIR`` the variant is loaded
  from the directory another server saved it to (a replica).
- ``{"cmd": "save"}``: save the variant now (so a replica can load it); the reply says where, whether loading it
  compiles again, and why it could not be saved if so.
- ``{"cmd": "accuracy"}``: top-1 on val now (the FP32 reference writes the predictions others compare with).
- ``{"cmd": "report"}``: the row fields no timing gives (build time, first call, accuracy, size, manifest).
- ``{"cmd": "slice", "scenario": NAME, "seconds": S, "min_calls": K}``: time calls for S seconds and K calls.
- ``{"cmd": "measure", "scenario": NAME}``: time the scenario alone: its whole budget as one slice.
- ``{"cmd": "finish"}``: rows from every slice pooled (``slice_lengths`` keeps the split), then exit.

Any failure answers ``{"error": "..."}`` and exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, TextIO

PROTOCOL = 2


class _Server:
    def __init__(self, reply: TextIO) -> None:
        self.reply = reply
        self.prep = None
        self.calls: dict[str, Any] = {}  # scenario -> its warm call (bench.scenarios.batch.TimedCall)
        self.samples: dict[str, list[list[float]]] = {}
        self.idle_waits: dict[str, list[float]] = {}  # per scenario: seconds each slice's pools took to stop spinning

    def send(self, payload: dict[str, Any]) -> None:
        self.reply.write(json.dumps(payload, default=str) + "\n")
        self.reply.flush()

    def start(self, job_dict: dict[str, Any], load_dir: str | None = None, warm: bool = True) -> dict[str, Any]:
        """Build or load the variant; ``warm``: warm every scenario up now (else at its first slice, if any).

        A builder whose variant loaded copies will time skips the warm-up: it may never be timed.
        """
        from bench.config import Job
        from bench.measure.threads import pin_threads
        from bench.run.process import prepare

        self.prep = prepare(Job.from_dict(job_dict), load_dir)
        for scenario in self.prep.job.scenarios:
            if warm:
                self.calls[scenario.name] = self._warm(scenario)
            self.samples[scenario.name] = []
        self.prep.pinning = pin_threads(self.prep.job.threads)  # built and warm: nothing compiles from here on
        batches = {s.name: getattr(self.calls.get(s.name), "batch", s.batch_size) for s in self.prep.job.scenarios}
        self.prep.eval_batch = max(batches.values(), default=None)  # warmed up already: accuracy compiles nothing
        return {"ok": True, "first_call_ms": self.prep.first_ms, "variant": self.prep.variant.name, "batches": batches}

    def save(self) -> dict[str, Any]:
        from bench.run.process import save_variant
        from optim.variant import loading_compiles

        problem = save_variant(self.prep)
        return {
            "ok": True,
            "dir": None if problem else str(self.prep.workdir),
            "save_problem": problem,
            "load_compiles": loading_compiles(self.prep.variant.manifest),
        }

    def _warm(self, scenario):
        """Warm the scenario's call up once (the scenario module owns how: :mod:`bench.scenarios`)."""
        from bench.scenarios import get

        return get(scenario.name).prepare(self.prep, scenario)

    def _scenario(self, name: str):
        known = {s.name: s for s in self.prep.job.scenarios}
        if name not in known:
            raise ValueError(f"unknown scenario {name!r}")
        if name not in self.calls:
            self.calls[name] = self._warm(known[name])  # started without warm-up, timed after all
        return known[name]

    def slice(self, scenario: str, seconds: float, min_calls: int, warm_calls: int = 1) -> dict[str, Any]:
        """Untimed ``warm_calls`` first (the other process just ran: caches and thread pools are cold), then time.

        Not once a call has outlasted the whole slice: the warm call would double the slice and warm nothing.

        The reply waits until this process's thread pools stop spinning (:mod:`bench.measure.quiesce`): the
        process timed next must not share the CPUs with them.
        """
        from bench.measure.quiesce import wait_until_idle
        from bench.scenarios import get

        self._scenario(scenario)
        timed = self.calls[scenario]
        last = self.samples[scenario][-1] if self.samples[scenario] else None
        if not (last and min(last) >= seconds):  # a call longer than the slice reads its weights from memory anyway
            for _ in range(max(0, int(warm_calls))):
                timed.call()
        samples = get(scenario).time_slice(timed, float(seconds), int(min_calls))
        self.samples[scenario].append(samples)
        self.idle_waits.setdefault(scenario, []).append(wait_until_idle())
        return {"samples": samples}

    def measure(self, scenario: str) -> dict[str, Any]:
        """The scenario timed alone, from warm-up to its full budget (the unpaired way)."""
        from bench.scenarios import get

        config = self._scenario(scenario)
        result = get(scenario).time_alone(self.calls[scenario], config)
        self.samples[scenario].append(result)
        return {"ok": True, "calls": len(result)}

    def accuracy(self) -> dict[str, Any]:
        from bench.run.process import measure_accuracy

        return {"ok": True, "accuracy": measure_accuracy(self.prep)}

    def report(self) -> dict[str, Any]:
        from bench.run.process import common_fields

        return {"ok": True, "fields": common_fields(self.prep)}

    def finish(self) -> dict[str, Any]:
        """One row per measured scenario (the scenario module writes its part), with the fields every row has."""
        import numpy as np

        from bench.run.process import finish
        from bench.scenarios import get

        rows = []
        for scenario in self.prep.job.scenarios:
            chunks = self.samples[scenario.name]
            if not chunks:
                continue
            row = get(scenario.name).row(self.prep, scenario, self.calls[scenario.name], chunks)
            waits = self.idle_waits.get(scenario.name)
            if waits:  # how long this variant's pools spun after a slice: the reason the reply waits for them
                row["idle_wait_ms_p50"] = round(float(np.median(waits)) * 1e3, 1)
            rows.append(row)
        return {"rows": finish(self.prep, rows)}

    def handle(self, msg: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The reply to one command, and whether the process ends after sending it."""
        cmd = msg.get("cmd")
        if cmd == "ping":
            return {"ok": True, "protocol": PROTOCOL}, False
        if cmd == "start":
            return self.start(msg["job"], msg.get("load"), msg.get("warm", True)), False
        if cmd == "slice":
            args = (msg["scenario"], msg.get("seconds", 0.1), msg.get("min_calls", 1), msg.get("warm_calls", 1))
            return self.slice(*args), False
        if cmd == "finish":
            return self.finish(), True
        simple = {"save": self.save, "report": self.report, "accuracy": self.accuracy}
        if cmd in simple:
            return simple[cmd](), False
        if cmd == "measure":
            return self.measure(msg["scenario"]), False
        raise ValueError(f"unknown command {cmd!r}")


def _import_libraries() -> None:
    """Import torch and timm now (most of a fresh process's start-up, docs/measurement.md).

    A sweep starts a variant's second process beside the first and waits for both to be ready before the
    first builds: the two imports then overlap each other instead of the build or the timing.
    """
    try:
        import timm  # noqa: F401
        import torch  # noqa: F401
    except ImportError:  # the start command reports what is missing, as one line
        pass


def serve(commands: TextIO, reply: TextIO, log_path: str) -> int:
    """Answer ``commands`` on ``reply`` until ``finish`` or the end of input; the libraries print to ``log_path``.

    A fresh interpreter (:func:`main`) and a process forked from the warm forkserver (:mod:`bench.run.zygote`)
    both end up here.
    """
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    server = _Server(reply)
    _import_libraries()
    for line in commands:
        if not line.strip():
            continue
        try:
            answer, done = server.handle(json.loads(line))
            server.send(answer)
            if done:
                return 0
        except BaseException as exc:  # the coordinator turns this into a failed row; nothing may escape silently
            traceback.print_exc()
            from bench.run.failures import failure_code, failure_text

            server.send({"error": failure_text(exc), "code": failure_code(exc)})
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log_path = argv[argv.index("--log") + 1] if "--log" in argv else os.devnull
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    return serve(sys.stdin, reply, log_path)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # compiled graphs and ORT pools can hang an orderly interpreter exit; the reply is sent
