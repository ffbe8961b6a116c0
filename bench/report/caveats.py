"""What an answer rests on, said where the answer is read (the answer line, explanations.md, the page).

An answer from a smoke run, from a checkpoint that scores at chance, or with a budget finer than one validation
image looks exactly like a sound one; nothing in the leaderboard would tell a reader otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from bench.report.leaderboard import REFERENCE, num
from bench.scenarios import in_rows

NEAR_CHANCE = 1.5  # fp32 top-1 under this many times chance (100 / classes) is "near chance"


def caveats(df: pd.DataFrame, rows: list[Mapping[str, Any]], max_drop: float) -> list[tuple[str, str]]:
    """(short form for the answer line, full sentence) for each thing the answer rests on."""
    out: list[tuple[str, str]] = []
    if any(r.get("quick") for r in rows):
        out.append(
            (
                "measured with --quick",
                "measured with --quick (short warm-up and timing): repeat without it before deciding.",
            )
        )
    ref = df[(df["variant"] == REFERENCE) & (df["status"] == "ok")]
    top1 = num(ref.iloc[0].get("top1")) if not ref.empty else math.nan
    classes = max((int(num(r.get("num_classes"))) for r in rows if num(r.get("num_classes")) > 1), default=0)
    if classes and not math.isnan(top1) and top1 < NEAR_CHANCE * 100 / classes:
        chance = 100 / classes
        out.append(
            (
                f"fp32 near chance ({top1:.1f}% on {classes} classes)",
                f"fp32 top-1 is {top1:.1f}%, near chance for {classes} classes ({chance:.1f}%): is the checkpoint "
                "trained, and is --data the data it was trained on? Drops measured against it say little.",
            )
        )
    images = max((int(num(r.get("val_images"))) for r in rows if num(r.get("val_images")) > 0), default=0)
    if images and 100 / images > max_drop:
        step = 100 / images
        out.append(
            (
                f"one val image = {step:.2g} points > the {max_drop:g}-point budget",
                f"one validation image is {step:.2g} points of top-1, more than the {max_drop:g}-point budget: "
                f"with {images} images the drop cannot resolve the budget (use a larger validation split).",
            )
        )
    for scenario in in_rows(list(rows)):
        for item in scenario.caveats(list(rows)):
            pair = item if isinstance(item, tuple) else (item, item)
            if pair not in out:  # scenarios that time the same way say the same thing once
                out.append(pair)
    return out


def with_caveats(answer: str, found: list[tuple[str, str]]) -> str:
    """The answer lines, each followed by the short caveats (empty list: unchanged)."""
    if not found:
        return answer
    tail = " (caution: " + "; ".join(short for short, _ in found) + ")"
    return "\n".join(line + tail for line in answer.splitlines())


def resumed_with_other_settings(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A run continued with another executor or timeout: the configuration shown is the latest start's, while the
    rows measured before ran with the earlier settings (each row names its executor)."""
    starts = [item for item in config.get("resumed") or () if isinstance(item, Mapping)]
    changes = [
        f"{name} {old!r} -> {new!r} ({item.get('at', '?')})"
        for item in starts
        for name, (old, new) in dict(item.get("changed") or {}).items()
        if name not in ("max_drop", "recipes")  # the answer says its budget; added recipes ran as they were
    ]
    if not changes:
        return []
    return [
        (
            "resumed with other settings",
            f"the run was resumed with other settings ({'; '.join(changes)}); rows measured before ran with the "
            "earlier ones: the configuration shown is the latest start's.",
        )
    ]
