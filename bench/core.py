"""Streaming core vs re-running neurokit2 every second: ``python bench/core.py [--json]``."""

import sys

from monitor.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "core", *sys.argv[1:]]))
