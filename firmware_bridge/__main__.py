"""``python -m firmware_bridge lines --wearer alice ...``: the bridge commands without ``anxmon``."""

import sys

from firmware_bridge.cli import main

sys.exit(main())
