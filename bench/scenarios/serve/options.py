"""The serving scenario's options, checked once: ``--serve``, ``--slo-ms``, ``--serve-top``, ``--serve-minutes``."""

from __future__ import annotations

from typing import Any

from data.errors import InputError

DEFAULT_TOP = 2
DEFAULT_MINUTES = 5.0
QUICK_MINUTES = 1.5
SLO_FACTOR = 10.0  # without --slo-ms: ten times fp32's batch-1 p50 of the same run (room for a queue)
MAX_SLO_MS = 60_000.0
MAX_MINUTES = 600.0


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--serve", action="store_true", help="after the sweep, the Poisson rate each top variant holds at a p99 bound"
    )
    parser.add_argument(
        "--slo-ms", type=float, help=f"the p99 bound of --serve in ms (default {SLO_FACTOR:g} x fp32's batch-1 p50)"
    )
    parser.add_argument("--serve-top", type=int, help=f"variants --serve measures besides fp32 (default {DEFAULT_TOP})")
    parser.add_argument(
        "--serve-minutes",
        type=float,
        help=f"time budget of --serve (default {DEFAULT_MINUTES:g}, {QUICK_MINUTES:g} with --quick)",
    )


def checked(options: Any) -> dict[str, Any] | None:
    """The scenario's options from parsed ones, or None without ``--serve``; bad values are one line, exit 2."""
    slo, top, minutes = (getattr(options, n, None) for n in ("slo_ms", "serve_top", "serve_minutes"))
    if not getattr(options, "serve", False):
        named = (("slo-ms", slo), ("serve-top", top), ("serve-minutes", minutes))
        given = [f"--{n}" for n, v in named if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} set(s) up the serving measurement: add --serve")
        return None
    if slo is not None and not 0 < slo <= MAX_SLO_MS:
        raise InputError(f"--slo-ms must be a p99 bound in (0, {MAX_SLO_MS:g}] milliseconds, got {slo:g}")
    if top is not None and top < 1:
        raise InputError(f"--serve-top must be at least 1 (fp32 is always measured besides), got {top}")
    if minutes is not None and not 0 < minutes <= MAX_MINUTES:
        raise InputError(f"--serve-minutes must be in (0, {MAX_MINUTES:g}], got {minutes:g}")
    quick = bool(getattr(options, "quick", False))
    return {
        "slo_ms": slo,
        "top": top or DEFAULT_TOP,
        "minutes": minutes or (QUICK_MINUTES if quick else DEFAULT_MINUTES),
    }
