"""Wearers one service process holds over MQTT: ``python bench/live.py [--json]``."""

import sys

from monitor.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "live", *sys.argv[1:]]))
