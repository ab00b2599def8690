"""minicnn.ops.workspace: scratch buffers reused between calls, bounded, per thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from minicnn.ops import workspace


@pytest.fixture(autouse=True)
def empty_cache():
    workspace.clear()
    yield
    workspace.clear()


def test_same_key_same_buffer_other_key_other_buffer():
    a = workspace.scratch(np, "k", (3, 4), np.float32)
    assert workspace.scratch(np, "k", (3, 4), np.float32) is a
    assert workspace.scratch(np, "other", (3, 4), np.float32) is not a
    assert workspace.scratch(np, "k", (4, 3), np.float32) is not a
    assert workspace.scratch(np, "k", (3, 4), np.float64).dtype == np.float64


def test_zero_fills_on_creation_only():
    a = workspace.scratch(np, "z", (5,), np.float64, zero=True)
    np.testing.assert_array_equal(a, np.zeros(5))
    a[2] = 7.0  # the caller's rule: parts relied on being zero are never written
    b = workspace.scratch(np, "z", (5,), np.float64, zero=True)
    assert b is a and b[2] == 7.0


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(workspace, "MAX_BYTES", 1000)
    a = workspace.scratch(np, "a", (100,), np.float32)  # 400 bytes
    workspace.scratch(np, "b", (100,), np.float32)  # 800 bytes in all
    workspace.scratch(np, "c", (100,), np.float32)  # would be 1200: the cache is emptied first
    assert workspace.scratch(np, "a", (100,), np.float32) is not a
    assert workspace._cache().nbytes <= 1000


def test_threads_do_not_share_buffers():
    mine = workspace.scratch(np, "t", (8,), np.float32)
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(workspace.scratch(np, "t", (8,), np.float32)))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
