#!/usr/bin/env python3
"""Run only the patch stage on a work directory: `bridge stage patch` (see --help)."""
import sys

from bridge.cli import main

sys.exit(main(["stage", "patch", *sys.argv[1:]]))
