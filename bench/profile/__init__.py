"""Helpers of ``python -m bench.profile``: workloads, the three profilers, loop timing and the verdict.

Each module has one job: ``workloads`` turns a target (data / train / infer) into a step function,
``cprof`` / ``torchprof`` / ``lineprof`` run one profiler over it, ``measure`` times the loop without any
profiler attached (profilers distort timings) and tries input-pipeline fixes, and ``verdict`` turns
timings into a sentence (a pure function, testable on synthetic numbers).
"""
