"""Everything a finished sweep writes besides ``results.jsonl``: the leaderboard, the answer, plots, explanations
and the trackers (TensorBoard, W&B)."""

from bench.report.outputs import ReportOutputs, write_reports

__all__ = ["ReportOutputs", "write_reports"]
