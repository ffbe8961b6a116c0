"""``serve``: how many requests per second one machine takes with the p99 under a bound, and with which serving
configuration (largest batch, queue delay, instances x threads). Opt-in with ``--serve``; measured after the sweep
on fp32 and the answer's top variants (docs/serving.md)."""

from bench.scenarios import register
from bench.scenarios.serve.scenario import Serve

register(Serve())
