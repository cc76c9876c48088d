"""``anxmon analyze`` speed as a multiple of real time: ``python bench/analyze.py [--json]``."""

import sys

from monitor.bench import run_bench

if __name__ == "__main__":
    sys.exit(run_bench("analyze", as_json="--json" in sys.argv))
