"""``python -m bench.gate``: the regression gate (``cli``), its inputs, statistics, configuration and report, the
same-job A/B mode (``ab``) and the false-alarm/power simulator (``sim``)."""
