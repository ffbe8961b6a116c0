"""``python -m optim list``: every recipe step, what it takes and makes, and where it runs."""

from __future__ import annotations

from collections.abc import Sequence

from models.errors import ArgumentParser, run_cli


def main(argv: Sequence[str] | None = None) -> int:
    from optim.registry import default_recipes, list_steps

    parser = ArgumentParser(prog="python -m optim", description="List recipe steps and default recipes.")
    parser.add_argument("command", choices=["list"])
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch filter on step names, e.g. 'ptq*'")
    args = parser.parse_args(argv)
    steps = list_steps(args.pattern)
    width = max((len(s.usage) for s in steps), default=10)
    for spec in steps:
        where = "/".join(sorted(spec.devices))
        chain = f"{'/'.join(sorted(spec.accepts))} -> {spec.produces}"
        print(f"{spec.usage:<{width}}  [{where}; {chain}]  {spec.description}")
    for device in ("cpu", "cuda"):
        print(f"default recipes on {device}: {', '.join(default_recipes(device))}")
    print("chain steps with '+', e.g. prune(0.5)+ptq(ort); `python -m bench --recipes R1,R2` measures them")
    return 0


if __name__ == "__main__":
    run_cli(main)
