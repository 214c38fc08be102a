#!/usr/bin/env python3
"""ONNX's backend test cases through bridge's ONNX path (see ``bridge/conformance.py``):

    python scripts/conformance.py [--suite node|pytorch-converted|pytorch-operator]... [--only OP_TYPE]...
                                  [--case NAME]... [--jobs 2] [--timeout 120] [--max-minutes M] [--force]

Appends to ``conformance/results.jsonl`` and regenerates ``conformance/README.md``.
"""
import sys

from bridge.conformance import main

sys.exit(main(sys.argv[1:]))
