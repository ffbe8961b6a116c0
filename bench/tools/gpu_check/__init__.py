"""``make gpu-check OUT=DIR [WHEELS=DIR]``: every CUDA path of optbench verified by one command in a few minutes.

Why one prepared command: GPU time is often lent rarely and briefly (a bare machine, its own torch, no internet,
minutes with start-up and copies included), and writing the checks while the machine is held spends that time
twice. This package is written and rehearsed beforehand: on a machine without CUDA it runs the same
steps on the CPU with a tiny model (a dry run, said so everywhere it writes), and the test suite runs that.

In order, each step under a time budget derived from ``--minutes`` (8 by default), the whole run ending by then:

1. setup: carried wheels from ``--wheels`` unpacked into a scratch folder on ``PYTHONPATH`` (only those whose
   package the machine lacks: the machine's own builds, compiled against its torch, win), then the machine is
   described (GPU, driver, CUDA, cuDNN, torch, packages) and the recipe names are checked against ``optim list``;
2. timers (:mod:`bench.tools.gpu_check.timers_check`): end-to-end against device-only on the same calls, fp32 and
   channels_last, batch 1 and the throughput batch;
3. one paired ``python -m bench`` sweep of every CUDA recipe that can run there (compiled and torchao first: the
   ones with the least GPU evidence), stopped at its deadline with what it measured kept;
4. ``python -m bench.profile --target infer`` with the torch profiler: the trace is summarized (kernel count,
   top kernels);
5. every test marked ``gpu`` (``pytest -m gpu``, no ``-x``, the slowest compile test last), until the deadline.

Everything lands in ``--out`` as at most eight files (what a lent machine hands back): summary.md, summary.json,
leaderboard.md, results.jsonl (raw samples left out), pytest-gpu.txt, timers.json, profile.txt, logs.txt. The
run folders themselves go to a temporary folder that is removed, or to ``--results DIR`` to keep them.

It runs under whatever torch the machine has (it never installs one): the project is imported from the checkout
through ``PYTHONPATH``, every step is a subprocess of the interpreter that started this one.

Modules, one job each: :mod:`.plan` (budgets and recipes), :mod:`.wheels` (carried wheels), :mod:`.process`
(steps as subprocesses with deadlines), :mod:`.probe` (the machine), :mod:`.recipes` (which recipes run),
:mod:`.timers_step`, :mod:`.sweep` with :mod:`.outcomes`, :mod:`.profile_step`, :mod:`.pytest_step` (the steps),
:mod:`.outputs` and :mod:`.summary` (the files in ``--out``), :mod:`.run` (the whole check), :mod:`.cli`; the
timers step's own command is :mod:`.timers_check` (its passes in :mod:`.timers_passes`, its reading in
:mod:`.timers_reading`).
"""
