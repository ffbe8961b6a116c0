"""``python -m bench.serve --log FILE``: one variant held warm in its own process, timed in slices on request.

Why: this VM's speed changes by 20-50% within seconds (an in-cache matmul swung between 51 and 80 us), so
two variants timed one after the other differ by the machine's mood as much as by their code. Held in two
processes and timed in alternating short slices, both see the same moods, and the ratio of their slice
medians is stable where their absolute times are not (see :mod:`bench.interleave`). One process per variant
stays the rule: the slices only alternate in time.

Protocol: one JSON object per line on stdin, one reply per line on the original stdout; everything the
libraries print goes to ``--log``. Commands, in order:

- ``{"cmd": "start", "job": {...}}``: build the variant (:func:`bench.worker.prepare`), warm every scenario up
  (``"warm": false``: at its first slice instead), pin the threads (:mod:`bench.affinity`). With
  ``"load": DIR`` the variant is loaded from the directory another server saved it to (a replica).
- ``{"cmd": "ping"}``: answers once the libraries every variant needs are imported (done before reading
  commands, so a coordinator can import in a second process while the first is still idle).
- ``{"cmd": "save"}``: save the variant to its directory now (so a replica can load it); the reply says
  where, whether loading it compiles again, and why it could not be saved if so.
- ``{"cmd": "accuracy"}``: top-1 on val now (the FP32 reference writes the predictions others compare with).
- ``{"cmd": "report"}``: the variant's row fields that no timing gives (build time, first call, accuracy,
  size, manifest): a builder whose variant is timed by processes that loaded it answers this and exits.
- ``{"cmd": "slice", "scenario": NAME, "seconds": S, "min_calls": K}``: time calls for S seconds and K calls.
- ``{"cmd": "finish"}``: rows from every slice pooled (``slice_lengths`` keeps the split), then exit.

Any failure answers ``{"error": "..."}`` and exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, TextIO


class _Server:
    def __init__(self, reply: TextIO) -> None:
        self.reply = reply
        self.prep = None
        self.calls: dict[str, Any] = {}  # scenario -> (timed fn, batch, note)
        self.samples: dict[str, list[list[float]]] = {}
        self.idle_waits: dict[str, list[float]] = {}  # per scenario: seconds each slice's pools took to stop spinning

    def send(self, payload: dict[str, Any]) -> None:
        self.reply.write(json.dumps(payload, default=str) + "\n")
        self.reply.flush()

    def start(self, job_dict: dict[str, Any], load_dir: str | None = None, warm: bool = True) -> dict[str, Any]:
        """Build or load the variant; ``warm``: warm every scenario up now (else at its first slice, if any).

        A builder whose variant loaded copies will time skips the warm-up: it may never be timed.
        """
        from bench.affinity import pin_threads
        from bench.worker import Job, prepare

        self.prep = prepare(Job.from_dict(job_dict), load_dir)
        for scenario in self.prep.job.scenarios:
            if warm:
                self.calls[scenario.name] = self._warm(scenario)
            self.samples[scenario.name] = []
        self.prep.pinning = pin_threads(self.prep.job.threads)  # built and warm: nothing compiles from here on
        batches = {
            s.name: self.calls[s.name][2] if s.name in self.calls else s.batch_size for s in self.prep.job.scenarios
        }
        self.prep.eval_batch = max(batches.values(), default=None)  # warmed up already: accuracy compiles nothing
        return {"ok": True, "first_call_ms": self.prep.first_ms, "variant": self.prep.variant.name, "batches": batches}

    def save(self) -> dict[str, Any]:
        from bench.worker import save_variant
        from optim.variant import loading_compiles

        problem = save_variant(self.prep)
        manifest = self.prep.variant.manifest
        return {
            "ok": True,
            "dir": None if problem else str(self.prep.workdir),
            "save_problem": problem,
            "load_compiles": loading_compiles(manifest),
        }

    def _warm(self, scenario):
        """Warm the scenario up once; on a GPU that runs out of memory, halve the batch as the sweep does."""
        from bench.timing import WallTimer, cuda_synchronize, warm_up
        from bench.worker import halve_on_oom, scenario_input

        prep = self.prep
        variant, job = prep.variant, prep.job
        timer = WallTimer(cuda_synchronize if job.device == "cuda" else None)

        def attempt(batch: int):
            host = scenario_input(job, scenario, prep.info.input_size, batch)

            def call():
                return variant.predict(variant.prepare_input(host))

            warm_up(call, scenario, timer)
            return call

        call, batch, note = halve_on_oom(scenario.batch_size, attempt)
        return call, timer, batch, note

    def slice(self, scenario: str, seconds: float, min_calls: int, warm_calls: int = 1) -> dict[str, Any]:
        """Untimed ``warm_calls`` first (the other process just ran: caches and thread pools are cold), then time.

        The reply waits until this process's thread pools stop spinning (:mod:`bench.quiesce`): the process
        timed next must not share the CPUs with them.
        """
        from bench.quiesce import wait_until_idle
        from bench.timing import time_calls

        if scenario not in self.calls:
            known = {s.name: s for s in self.prep.job.scenarios}
            if scenario not in known:
                raise ValueError(f"unknown scenario {scenario!r}")
            self.calls[scenario] = self._warm(known[scenario])  # started without warm-up, timed after all
        call, timer, _, _ = self.calls[scenario]
        for _ in range(max(0, int(warm_calls))):
            call()
        samples = time_calls(call, timer, max(1, int(min_calls)), float(seconds), max(60.0, 4 * float(seconds)))
        self.samples[scenario].append(samples)
        waited = wait_until_idle()
        self.idle_waits.setdefault(scenario, []).append(waited)
        return {"samples": samples}

    def accuracy(self) -> dict[str, Any]:
        from bench.worker import measure_accuracy

        return {"ok": True, "accuracy": measure_accuracy(self.prep)}

    def report(self) -> dict[str, Any]:
        from bench.worker import common_fields

        return {"ok": True, "fields": common_fields(self.prep)}

    def finish(self) -> dict[str, Any]:
        import numpy as np

        from bench.timing import CudaEventTimer, run_timed
        from bench.worker import finish, scenario_input, scenario_row

        prep = self.prep
        rows = []
        for scenario in prep.job.scenarios:
            slices = self.samples[scenario.name]
            if not slices:
                continue
            call, _, batch, note = self.calls[scenario.name]
            device_only = None
            if prep.job.device == "cuda":  # device-only time needs no pairing: the GPU is not shared here
                ready = prep.variant.prepare_input(scenario_input(prep.job, scenario, prep.info.input_size, batch))
                device_only = run_timed(lambda ready=ready: prep.variant.predict(ready), scenario, CudaEventTimer())
            pooled = [s for chunk in slices for s in chunk]
            row = scenario_row(prep.job, scenario, batch, pooled, device_only, note)
            row["slice_lengths"] = [len(chunk) for chunk in slices]
            waits = self.idle_waits.get(scenario.name)
            if waits:  # how long this variant's pools spun after a slice: the reason the reply waits for them
                row["idle_wait_ms_p50"] = round(float(np.median(waits)) * 1e3, 1)
            rows.append(row)
        return {"rows": finish(prep, rows)}


def _import_libraries() -> None:
    """Import torch and timm now (about 6 s on the 2-vCPU VM, most of a process's start-up).

    A sweep starts a variant's second process beside the first and waits for both to be ready before the
    first builds: the two imports then overlap each other instead of the build or the timing.
    """
    try:
        import timm  # noqa: F401
        import torch  # noqa: F401
    except ImportError:  # the start command reports what is missing, as one line
        pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log_path = argv[argv.index("--log") + 1] if "--log" in argv else os.devnull
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    server = _Server(reply)
    _import_libraries()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            cmd = msg.get("cmd")
            if cmd == "start":
                server.send(server.start(msg["job"], msg.get("load"), msg.get("warm", True)))
            elif cmd == "ping":
                server.send({"ok": True})
            elif cmd == "save":
                server.send(server.save())
            elif cmd == "slice":
                server.send(
                    server.slice(
                        msg["scenario"], msg.get("seconds", 0.1), msg.get("min_calls", 1), msg.get("warm_calls", 1)
                    )
                )
            elif cmd == "report":
                server.send(server.report())
            elif cmd == "accuracy":
                server.send(server.accuracy())
            elif cmd == "finish":
                server.send(server.finish())
                return 0
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except BaseException as exc:  # the coordinator turns this into a failed row; nothing may escape silently
            traceback.print_exc()
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            server.send({"error": f"{type(exc).__name__}: {message}"[:500]})
            return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # compiled graphs and ORT pools can hang an orderly interpreter exit; the reply is sent
