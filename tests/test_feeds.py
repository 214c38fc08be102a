"""``bridge validate --inputs FILE.npz``: the user's arrays are what every runner is fed."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from bridge import pipeline
from bridge.errors import BridgeError
from bridge.feeds import read_feeds
from bridge.spec import InputSpec

SPECS = [InputSpec("ids", (2, 7), "int64"), InputSpec("mask", (2, 7), "float32")]


def save(tmp_path, **arrays):
    path = tmp_path / "inputs.npz"
    np.savez(path, **arrays)
    return path


def test_batch_may_differ_and_dynamic_axes_are_free(tmp_path):
    path = save(tmp_path, ids=np.zeros((5, 9), np.int64), mask=np.ones((5, 9), np.float32))
    batch, feeds = read_feeds(path, SPECS, dynamic_batch=True, dynamic_axes={"ids": [1], "mask": [-1]})
    assert batch == 5 and list(feeds) == ["ids", "mask"] and feeds["ids"].shape == (5, 9)
    with pytest.raises(BridgeError, match=r"'ids' has shape \[5, 9\], the model's input is 2x7"):
        read_feeds(path, SPECS, dynamic_batch=True)  # axis 1 not dynamic


def test_static_batch_and_disagreeing_batches_are_refused(tmp_path):
    path = save(tmp_path, ids=np.zeros((3, 7), np.int64), mask=np.ones((3, 7), np.float32))
    with pytest.raises(BridgeError, match="static shape"):
        read_feeds(path, SPECS, dynamic_batch=False)
    path = save(tmp_path, ids=np.zeros((3, 7), np.int64), mask=np.ones((4, 7), np.float32))
    with pytest.raises(BridgeError, match=r"disagree on the batch size \(\[3, 4\]\)"):
        read_feeds(path, SPECS)


def test_object_arrays_are_not_unpickled(tmp_path):
    path = tmp_path / "inputs.npz"
    np.savez(path, ids=np.array([{"a": 1}], dtype=object), mask=np.ones((2, 7), np.float32))
    with pytest.raises(BridgeError, match="not a readable .npz file"):
        read_feeds(path, SPECS)


def test_validate_feeds_the_given_arrays(seqnet_work, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(seqnet_work, work)
    x = np.random.default_rng(5).standard_normal((3, 12, 5000)).astype(np.float32)
    report = pipeline.validate(work, inputs_file=save(tmp_path, x=x))
    assert report.passed, report.render()
    assert report.batch_sizes == [3] and {d.batch for d in report.diffs} == {3}
    assert any("inputs from" in note for note in report.notes)
