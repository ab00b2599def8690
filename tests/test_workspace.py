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


# ---------------------------------------------------------------- the pool of output arrays
POOLED = (256, 512)  # 512 KiB of float32: above POOL_MIN_BYTES


def test_an_idle_output_array_is_handed_out_again():
    a = workspace.empty(np, POOLED, np.float32)
    address = a.ctypes.data
    del a  # nothing refers to it but the pool
    b = workspace.empty(np, POOLED, np.float32)
    assert b.ctypes.data == address
    assert b.shape == POOLED and b.dtype == np.float32


def test_an_array_still_seen_through_a_view_is_not_reused():
    a = workspace.empty(np, POOLED, np.float32)
    a[...] = 1.0
    address_a = a.ctypes.data
    view = a[3:, ::2]  # keeps a alive through view.base
    del a
    b = workspace.empty(np, POOLED, np.float32)
    b[...] = 2.0
    assert not np.shares_memory(b, view)
    assert (view == 1.0).all()
    del view, b  # both idle now: the next call gets the first of them again
    assert workspace.empty(np, POOLED, np.float32).ctypes.data == address_a


def test_small_arrays_are_not_pooled():
    small = workspace.empty(np, (4, 4), np.float32)
    assert small.nbytes < workspace.POOL_MIN_BYTES
    assert workspace._cache().pool == []  # plain np.empty


def test_an_idle_block_serves_any_shape_and_dtype_that_fits_at_most_twice_over():
    a = workspace.empty(np, POOLED, np.float32)  # a 512 KiB block
    address = a.ctypes.data
    del a
    b = workspace.empty(np, (128, 256), np.float64)  # 256 KiB: fits, half of the block used
    assert b.ctypes.data == address and b.shape == (128, 256) and b.dtype == np.float64
    assert b.flags.c_contiguous and b.flags.writeable
    del b
    d = workspace.empty(np, (1024, 1024), np.bool_)  # 1 MiB: the 512 KiB block is too small
    assert d.ctypes.data != address
    del d  # now idle: a 1 MiB and a 512 KiB block
    e = workspace.empty(np, (300, 300), np.float32)  # 352 KiB: only the 512 KiB block fits twice over
    assert e.ctypes.data == address


def test_pool_is_bounded(monkeypatch):
    nbytes = 256 * 512 * 4
    monkeypatch.setattr(workspace, "POOL_MAX_BYTES", 2 * nbytes)
    keep = [workspace.empty(np, POOLED, np.float32) for _ in range(3)]  # the third is not pooled
    assert workspace._cache().pool_bytes == 2 * nbytes
    del keep
    big = workspace.empty(np, (512, 512), np.float32)  # fits no idle block; over the cap: the
    assert workspace._cache().pool_bytes == 2 * nbytes  # idle blocks are dropped, this one kept
    assert len(workspace._cache().pool) == 1 and big.nbytes == 2 * nbytes


def test_outputs_of_live_tensors_never_share_memory():
    import minicnn
    import minicnn.nn.functional as F

    x = minicnn.randn(8, 32, 32, 32)  # 1 MiB: pooled
    outs = [F.relu(x * s) for s in (1.0, -1.0, 2.0)]
    for i, a in enumerate(outs):
        for b in outs[i + 1 :]:
            assert not np.shares_memory(a.array, b.array)
    np.testing.assert_array_equal(outs[0].array, np.maximum(x.array, 0))
    np.testing.assert_array_equal(outs[1].array, np.maximum(-x.array, 0))


def _train_steps(pool_bytes, monkeypatch):
    """Three SGD steps of the MNIST CNN (a second backward accumulating into .grad each time)."""
    import minicnn
    import minicnn.nn.functional as F
    from minicnn import models, optim

    monkeypatch.setattr(workspace, "POOL_MAX_BYTES", pool_bytes)
    workspace.clear()
    minicnn.manual_seed(0)
    model = models.mnist_cnn()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    x = minicnn.tensor(rng.standard_normal((16, 1, 28, 28)).astype(np.float32))
    y = minicnn.tensor(rng.integers(0, 10, 16))
    losses = []
    for _ in range(3):
        opt.zero_grad()
        for half in (slice(0, 8), slice(8, 16)):
            loss = F.cross_entropy(model(x[half]), y[half])
            loss.backward()
            losses.append(float(loss.item()))
        opt.step()
    return losses, [p.array.copy() for p in model.parameters()]


def test_training_with_the_pool_matches_training_without_it(monkeypatch):
    losses_pool, params_pool = _train_steps(512 << 20, monkeypatch)
    assert workspace._cache().pool_bytes > 0  # the pool was used
    losses_plain, params_plain = _train_steps(0, monkeypatch)
    assert losses_pool == losses_plain
    for a, b in zip(params_pool, params_plain):
        np.testing.assert_array_equal(a, b)


def test_pools_are_per_thread():
    a = workspace.empty(np, POOLED, np.float32)
    del a  # idle in this thread's pool
    seen = []

    def other_thread():
        seen.append(len(workspace._cache().pool))  # starts empty: our idle array is not there
        workspace.empty(np, POOLED, np.float32)
        seen.append(workspace._cache().pool_bytes)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert seen == [0, 256 * 512 * 4]
    assert len(workspace._cache().pool) == 1


def test_empty_cache_frees_idle_blocks_and_leaves_live_arrays_alone():
    import minicnn

    live = workspace.empty(np, POOLED, np.float32)
    live[...] = 3.0
    idle = workspace.empty(np, POOLED, np.float32)
    del idle
    workspace.scratch(np, "s", (8,), np.float32)
    minicnn.empty_cache()
    c = workspace._cache()
    assert c.pool == [] and c.pool_bytes == 0 and c.buffers == {} and c.nbytes == 0
    assert (live == 3.0).all()
    assert not np.shares_memory(workspace.empty(np, POOLED, np.float32), live)
