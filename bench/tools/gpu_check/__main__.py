"""``python -m bench.tools.gpu_check``: what ``make gpu-check`` runs."""

from bench.tools.gpu_check.cli import main
from data.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
