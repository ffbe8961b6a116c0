"""Root conftest: options of the benchmark suite (`pytest bench ...`). The suite itself lives in bench/."""
