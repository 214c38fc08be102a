#!/usr/bin/env python3
"""Run only the simplify stage on a work directory: `bridge stage simplify` (see --help)."""
import sys

from bridge.cli import main

sys.exit(main(["stage", "simplify", *sys.argv[1:]]))
