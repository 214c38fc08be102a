#!/usr/bin/env python3
"""Run only the validate stage on a work directory: `bridge validate` (see --help)."""
import sys

from bridge.cli import main

sys.exit(main(["validate", *sys.argv[1:]]))
