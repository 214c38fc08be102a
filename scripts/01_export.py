#!/usr/bin/env python3
"""Run only the export stage into a work directory: `bridge stage export SOURCE --out DIR`."""
import sys

from bridge.cli import main

sys.exit(main(["stage", "export", *sys.argv[1:]]))
