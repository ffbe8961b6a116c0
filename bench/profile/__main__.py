from bench.profile.cli import main
from models.errors import run_cli

run_cli(main)
