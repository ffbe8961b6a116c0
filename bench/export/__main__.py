from bench.export.cli import main
from data.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
