from bench.gate.cli import main
from data.errors import run_cli

run_cli(main)
