"""``anxmon analyze`` speed as a multiple of real time: ``python bench/analyze.py [--json]``."""

import sys

from monitor.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "analyze", *sys.argv[1:]]))
