#!/usr/bin/env python3
"""Run only the convert stage on a work directory: `bridge stage convert` (see --help)."""
import sys

from bridge.cli import main

sys.exit(main(["stage", "convert", *sys.argv[1:]]))
