"""``python -m optim list``: every recipe step, what it takes and makes, and where it runs.
``python -m optim show DIR``: load a saved variant (checked: nothing in it can run code), run it once, describe it."""

from __future__ import annotations

from collections.abc import Sequence

from data.errors import ArgumentParser, InputError, run_cli

USAGE_WIDTH = 60  # longer usages are not padded: they would push every description off the screen


def _list(pattern: str) -> int:
    """One line per step; a step named exactly gets its arguments (and, for ``ptq``, its backends) too."""
    from optim.registry import STEPS, default_recipes, list_steps

    if pattern not in STEPS and "(" in pattern:  # a recipe as `list` prints them, e.g. ptq(ort): its step
        pattern = pattern.split("(", 1)[0]
    steps = list_steps(pattern)
    if not steps:
        raise InputError(f"no recipe step matches {pattern!r}; `python -m optim list` shows them all")
    width = min(max((len(s.usage) for s in steps), default=10), USAGE_WIDTH)
    for spec in steps:
        where = "/".join(sorted(spec.devices))
        chain = f"{'/'.join(sorted(spec.accepts))} -> {spec.produces}"
        print(f"{spec.usage:<{width}}  [{where}; {chain}]  {spec.description}")
    if pattern in STEPS:
        spec = STEPS[pattern]
        lines = spec.details() if spec.details is not None else [f"  {arg.describe()}" for arg in spec.arg_list()]
        print("\n".join(lines))
    for device in ("cpu", "cuda"):
        print(f"default recipes on {device}: {', '.join(default_recipes(device))}")
    print("chain steps with '+', e.g. prune(0.5)+ptq(ort); `python -m bench --recipes R1,R2` measures them")
    print("`python -m optim list STEP` describes a step's arguments (for ptq: its backends and their options)")
    return 0


def _show(directory: str, device: str, model: str | None) -> int:
    import torch

    from models.spec import LoadSpec
    from optim.variant import Variant

    base = LoadSpec(path=None, model=model) if model else None
    variant = Variant.load(directory, device, base=base)
    manifest = variant.manifest
    c, h, w = manifest.get("data_config", {}).get("input_size") or (3, 224, 224)
    logits = variant(torch.randn(1, int(c), int(h), int(w)))
    source = manifest.get("source") or {}
    print(f"{manifest['name']} ({manifest.get('artifact_kind')}, {manifest.get('size_mb')} MB) on {variant.device}")
    print(f"  from {source.get('checkpoint')} ({source.get('arch')}, {source.get('num_classes')} classes)")
    print(f"  files: {', '.join(sorted(manifest.get('artifacts') or {}))} (sha256 checked)")
    print(f"  one call at {h}x{w}: logits {tuple(logits.shape)}, finite: {bool(torch.isfinite(logits).all())}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m optim", description="List recipe steps; show a saved variant.")
    parser.add_argument("command", choices=["list", "show"])
    parser.add_argument(
        "target",
        nargs="?",
        default=None,
        help="list: fnmatch filter on step names (a recipe such as ptq(ort) names its step); show: a variant dir",
    )
    parser.add_argument("--device", default="cpu", help="show: where to run it (default cpu)")
    parser.add_argument("--model", help="show: the package.module:callable of a variant of your own model class")
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list(args.target or "*")
    if not args.target:
        raise InputError("python -m optim show DIR: name the variant directory")
    return _show(args.target, args.device, args.model)


if __name__ == "__main__":
    run_cli(main)
