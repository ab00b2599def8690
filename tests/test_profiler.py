"""minicnn.profile: records every op's forward and backward, and always switches itself off."""

import numpy as np
import pytest

import minicnn
from minicnn import autograd


def _small_graph(seed=0):
    rng = np.random.default_rng(seed)
    x = minicnn.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    w = minicnn.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    b = minicnn.tensor(rng.standard_normal(2), requires_grad=True)
    return x, w, b


def _step(x, w, b):
    loss = ((x @ w + b).exp()).sum()
    loss.backward()
    return loss


def test_records_op_names_and_both_phases():
    x, w, b = _small_graph()
    with minicnn.profile() as prof:
        _step(x, w, b)
    keys = set(prof.stats)
    for op in ("MatMul", "Add", "Exp", "Sum"):
        assert (op, "forward") in keys, op
        assert (op, "backward") in keys, op
        assert prof.stats[(op, "forward")].count == 1
        assert prof.stats[(op, "backward")].count == 1
        assert prof.stats[(op, "forward")].seconds >= 0.0
    assert {phase for _, phase in keys} == {"forward", "backward"}


def test_counts_accumulate_over_steps_and_ops_without_grad_have_no_backward():
    x, w, b = _small_graph()
    with minicnn.profile() as prof:
        for _ in range(3):
            _step(x, w, b)
        with minicnn.no_grad():
            x.exp()
    assert prof.stats[("MatMul", "forward")].count == 3
    assert prof.stats[("MatMul", "backward")].count == 3
    assert prof.stats[("Exp", "forward")].count == 4  # 3 steps + the no_grad call
    assert prof.stats[("Exp", "backward")].count == 3
    rows = {r["op"]: r for r in prof.rows()}
    assert rows["Exp"]["forward_count"] == 4 and rows["Exp"]["backward_count"] == 3
    text = prof.table(steps=3)
    assert "MatMul" in text and "outside ops" in text and "per step" in text


def test_percentages_sum_to_100_and_outside_time_is_the_rest():
    x, w, b = _small_graph()
    with minicnn.profile() as prof:
        _step(x, w, b)
        sum(i * i for i in range(20000))  # Python work outside any op
    rows = prof.rows()
    assert sum(r["percent"] for r in rows) == pytest.approx(100.0, abs=1e-9)
    outside = rows[-1]
    assert outside["op"].startswith("(outside ops")
    op_rows = rows[:-1]
    assert sum(r["total_s"] for r in op_rows) == pytest.approx(prof.op_seconds)
    assert outside["total_s"] == pytest.approx(prof.total_seconds - prof.op_seconds)
    assert outside["total_s"] > 0.0
    assert [r["total_s"] for r in op_rows] == sorted((r["total_s"] for r in op_rows), reverse=True)
    for r in op_rows:
        assert r["total_s"] == pytest.approx(r["forward_s"] + r["backward_s"])


def test_profiling_does_not_change_results():
    x, w, b = _small_graph()
    loss_ref = _step(x, w, b)
    grads_ref = [t.grad.numpy().copy() for t in (x, w, b)]
    x2, w2, b2 = _small_graph()
    with minicnn.profile():
        loss = _step(x2, w2, b2)
    np.testing.assert_array_equal(loss.numpy(), loss_ref.numpy())
    for t, g in zip((x2, w2, b2), grads_ref):
        np.testing.assert_array_equal(t.grad.numpy(), g)


def test_profiler_is_off_after_the_block_even_on_exception():
    assert autograd._op_timer is None
    x, w, b = _small_graph()
    with pytest.raises(ZeroDivisionError):
        with minicnn.profile() as prof:
            assert autograd._op_timer is prof
            _step(x, w, b)
            1 / 0  # noqa: B018
    assert autograd._op_timer is None
    assert prof.total_seconds is not None and prof.total_seconds >= 0.0
    n = prof.stats[("MatMul", "forward")].count
    _step(x, w, b)  # not recorded any more
    assert prof.stats[("MatMul", "forward")].count == n


def test_nested_profiles_are_refused_and_results_wait_for_the_block_end():
    with minicnn.profile() as outer:
        with pytest.raises(RuntimeError, match="already recording"):
            with minicnn.profile():
                pass
        assert autograd._op_timer is outer  # the refused inner profile left the outer one alone
        with pytest.raises(RuntimeError, match="after the `with` block"):
            outer.table()
    assert autograd._op_timer is None
    with pytest.raises(ValueError, match="steps"):
        outer.table(steps=0)
