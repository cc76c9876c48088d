"""Streaming core vs re-running neurokit2 every second: ``python bench/core.py [--json]``."""

import sys

from monitor.bench import run_bench

if __name__ == "__main__":
    sys.exit(run_bench("core", as_json="--json" in sys.argv))
