"""The ``serve`` scenario as everything downstream reads it: its columns, its answer clause, its caveats and its
figure; the measurement itself is :mod:`bench.scenarios.serve.process`, the choice of variants
:mod:`bench.scenarios.serve.stage`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.scenarios.base import Scenario, num
from bench.scenarios.config import Column, ScenarioConfig
from bench.scenarios.serve import options as serve_options

MAX_BATCH = 16
NEAR_CEILING = 0.5  # a rate above this share of the harness's own ceiling measures the harness as much as the model


def _search_of(row: Mapping[str, Any]) -> dict[str, Any]:
    search = row.get("serve_search")
    return search if isinstance(search, dict) else {}


def _tried(row: Mapping[str, Any]) -> int:
    """How many serving configurations the row's search measured."""
    configs = _search_of(row).get("configs")
    return len(configs) if isinstance(configs, list) else 0


def _cut_short(row: Mapping[str, Any]) -> bool:
    """Whether the row's search stopped on its time budget before walking the whole grid (``stopped`` is set then
    only: :func:`bench.measure.serving_search.best_configuration`)."""
    return bool(_search_of(row).get("stopped"))


class Serve(Scenario):
    name = "serve"
    description = "Poisson arrivals, dynamic batching, K instances: the largest rate with p99 within the bound"
    paired = False
    default = False
    staged = True
    headline = "serve_rate"
    headline_column = "serve_rate"
    unit = "req/s"
    higher_is_better = True
    samples_field = None
    conditions = ("serve_slo_ms",)
    columns = (
        Column("serve_rate", "serve_rate", "req/s at bound", "{:,.1f}"),
        Column("serve_p99_ms", "serve_p99_ms", "serve p99 ms", "{:.2f}"),
        Column("serve_slo_ms", "serve_slo_ms", "bound ms", "{:.3g}"),
        Column("serve_config", "serve_config", "serving config", None),
        Column("serve_max_batch", "serve_max_batch", optional=True),
        Column("serve_delay_ms", "serve_delay_ms", optional=True),
        Column("serve_instances", "serve_instances", optional=True),
        Column("serve_threads", "serve_threads", optional=True),
        Column("serve_idle_p50_ms", "serve_idle_p50_ms", "idle call p50 ms", "{:.3g}", optional=True),
        Column("serve_rate_lower_bound", "serve_rate_lower_bound", optional=True),
    )
    speedup_column = "serve_speedup_vs_fp32"
    speedup_header = "req/s ×fp32"
    label = "serving"
    panel = "bars"
    axis_label = "requests per second with p99 within the bound (at fp32's pace), higher is better"
    slower_words = "serves fewer requests than fp32 at the bound"
    console_columns = ("serve_rate", "serve_config")

    def add_arguments(self, parser: Any) -> None:
        serve_options.add_arguments(parser)

    def config(self, options: Any, device: str) -> ScenarioConfig | None:
        settings = serve_options.checked(options)
        if settings is None:
            return None
        # max_seconds bounds one variant's measurement (its share of the budget, plus loading and warm-up)
        return ScenarioConfig(
            self.name,
            MAX_BATCH,
            warmup_iters=0,
            warmup_seconds=0.0,
            min_iters=1,
            min_seconds=0.0,
            max_seconds=settings["minutes"] * 60 + 300,
            options=settings,
        )

    def cli_args(self, cfg: ScenarioConfig) -> list[str]:
        out = ["--serve", "--serve-top", str(cfg.options["top"]), "--serve-minutes", f"{cfg.options['minutes']:g}"]
        return out + (["--slo-ms", f"{cfg.options['slo_ms']:g}"] if cfg.options.get("slo_ms") else [])

    def answer_text(self, rec: Mapping[str, Any], ranked_first: bool) -> str:
        rate, bound = num(rec.get("serve_rate")), num(rec.get("serve_slo_ms"))
        if bound != bound:  # NaN: not measured for this variant
            return ""
        if not rate > 0:
            return f"; serving: no configuration held p99 <= {bound:.3g} ms"
        delay = num(rec.get("serve_delay_ms"))
        at_least = "at least " if rec.get("serve_rate_lower_bound") is True else ""
        batch = int(num(rec.get("serve_max_batch")))
        return (
            f"; serves {at_least}{rate:,.0f} req/s at p99 <= {bound:.3g} ms (batch <= {batch}, "
            f"delay {delay:.3g} ms, {int(num(rec.get('serve_instances')))} x {int(num(rec.get('serve_threads')))} "
            "threads)"
        )

    def caveats(self, rows: list[Mapping[str, Any]]) -> list[str]:
        from optim.registry import REFERENCE

        mine = [r for r in rows if r.get("scenario") == self.name and r.get("status") == "ok"]
        reference = [r for r in mine if r.get("variant") == REFERENCE]
        held = [r for r in mine if num(r.get("serve_rate")) > 0]
        out = []
        if reference and not num(reference[0].get("serve_rate")) > 0 and held:
            out.append(
                f"{REFERENCE} held no rate at p99 <= {num(reference[0].get('serve_slo_ms')):.3g} ms, so the serving "
                "ratios to it are blank: the other variants' req/s stand alone."
            )
        if (
            reference
            and held
            and _cut_short(reference[0])
            and any(_tried(r) > _tried(reference[0]) for r in held if r is not reference[0])
        ):
            out.append(
                f"{REFERENCE}'s serving search ran out of time after {_tried(reference[0])} configuration(s), fewer "
                "than the variants compared with it, so the serving ratios overstate them: a new run with a larger "
                "--serve-minutes gives fp32 more (a resumed run keeps what it served)."
            )
        for row in rows:
            rate, ceiling = num(row.get("serve_rate")), num(row.get("serve_ceiling_rate"))
            if row.get("scenario") == self.name and rate > NEAR_CEILING * ceiling:
                out.append(
                    f"{row.get('variant')} serves {rate:,.0f} req/s, more than half the load generator's own ceiling "
                    f"({ceiling:,.0f} req/s with instances that do nothing): that rate measures the harness too."
                )
        return out

    def figures(self, df: Any, rows: list[Mapping[str, Any]], run_dir: Path) -> dict[str, Path]:
        from bench.scenarios.serve.curve import serve_curve

        mine = [r for r in rows if r.get("scenario") == self.name and r.get("status") == "ok"]
        return {"serve curve": serve_curve(mine, Path(run_dir) / "serve_curve.png")} if mine else {}

    def stage(self, cfg: ScenarioConfig, rows: list[Mapping[str, Any]], device: str, reference: str) -> Any:
        """The variants to measure after the sweep, and the bound (:mod:`bench.scenarios.serve.stage`)."""
        from bench.scenarios.serve.stage import plan

        return plan(cfg, rows, device, reference)

    # in the measurement process
    def prepare(self, prep: Any, cfg: ScenarioConfig) -> Any:
        from bench.scenarios.serve.process import Instances

        return Instances(prep)

    def time_alone(self, state: Any, cfg: ScenarioConfig) -> Any:
        from bench.scenarios.serve.process import measure

        return measure(state, cfg)

    def row(self, prep: Any, cfg: ScenarioConfig, state: Any, chunks: list[Any]) -> dict[str, Any]:
        from bench.scenarios.serve.process import result_row

        return result_row(self.name, chunks[-1])
