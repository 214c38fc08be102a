from __future__ import annotations

from pathlib import Path

import pytest

from bridge import pipeline


@pytest.fixture(scope="session")
def seqnet_work(tmp_path_factory) -> Path:
    """The seed model converted once per test session (the same code `make convert` runs)."""
    out = tmp_path_factory.mktemp("seqnet") / "work"
    pipeline.convert("bridge.models.seqnet:seqnet", out, echo=lambda line: None)
    return out
