"""minicnn.testing: gradcheck, compare_with_torch and compare_optimizer_with_torch catch deliberately
wrong backwards (a sign flip, a wrong reduction, batch norm's dx without the x-hat term) and name the
tensor and its worst element; the comparison rule; one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minicnn as mc
from minicnn import nn, optim
from minicnn.autograd import Function
from minicnn.nn import functional as F
from minicnn.testing import (
    GradcheckError,
    ParityError,
    ParityReport,
    assert_close,
    compare_arrays,
    compare_optimizer_with_torch,
    compare_with_torch,
    gradcheck,
)
from minicnn.testing._util import stream

torch = pytest.importorskip("torch")
TF = torch.nn.functional
ROOT = Path(__file__).resolve().parents[1]


def _rng(seed=0):
    return np.random.default_rng(seed)


def _x64(*shape, seed=0, requires_grad=True):
    return mc.tensor(_rng(seed).standard_normal(shape), requires_grad=requires_grad)


# ====================================================================== ops with a backward to break
class Mish(Function):
    """mish(x) = x tanh(softplus(x)); d/dx = t + x (1 - t^2) sigmoid(x), t = tanh(softplus(x))."""

    sign = 1.0

    def forward(self, x):
        self.x, self.t = x, np.tanh(np.logaddexp(0.0, x))
        return x * self.t

    def backward(self, g):
        sigmoid = 1.0 / (1.0 + np.exp(-self.x))
        return self.sign * g * (self.t + self.x * (1.0 - self.t**2) * sigmoid)


class MishSignFlipped(Mish):
    sign = -1.0


def _mish_grad(x):
    t = np.tanh(np.logaddexp(0.0, x))
    return t + x * (1.0 - t**2) / (1.0 + np.exp(-x))


class AddBiasMeanReduced(Function):
    """x (N, C) + b (C,). Wrong: db = g.mean(0), where the bias was broadcast over N rows (sum)."""

    def forward(self, x, b):
        return x + b

    def backward(self, g):
        return g, g.mean(axis=0)


class BatchNormNoXhatTerm(Function):
    """Training-mode batch norm over the rows of (N, C), no affine. Wrong dx: the x-hat term is missing,
    dx = (g - mean(g)) / std  instead of  (g - mean(g) - xhat * mean(g * xhat)) / std."""

    eps = 1e-5

    def forward(self, x):
        self.std = np.sqrt(x.var(axis=0) + self.eps)
        self.xhat = (x - x.mean(axis=0)) / self.std
        return self.xhat

    def backward(self, g):
        return (g - g.mean(axis=0)) / self.std


def _batch_norm_dx(x, g, eps=1e-5):
    std = np.sqrt(x.var(axis=0) + eps)
    xhat = (x - x.mean(axis=0)) / std
    return (g - g.mean(0) - xhat * (g * xhat).mean(0)) / std


class RowScale(Function):
    """x (N, C) * w (C,). Wrong: dw = (g * x).mean(0) (a wrong reduction) instead of the sum."""

    def forward(self, x, w):
        self.x, self.w = x, w
        return x * w

    def backward(self, g):
        return g * self.w, (g * self.x).mean(axis=0)


class Scale(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(mc.ones(c))

    def forward(self, x):
        return RowScale.apply(x, self.weight)


class TorchScale(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.linspace(0.5, 1.5, c))

    def forward(self, x):
        return x * self.weight


def _first_line(err) -> str:
    return str(err.value).splitlines()[0]


def _values_in(message: str, first: str, second: str) -> tuple:
    """The two numbers printed after ``first`` and ``second``: 'analytical 0.5, numerical -0.5'."""
    a = message.split(f"{first} ", 1)[1].split(",", 1)[0]
    b = message.split(f"{second} ", 1)[1].split(" ", 1)[0]
    return float(a), float(b)


def _index_in(message: str) -> tuple:
    """The worst element's index, as printed: 'worst element [1, 2]' -> (1, 2)."""
    inside = message.split("worst element [", 1)[1].split("]", 1)[0]
    return tuple(int(i) for i in inside.split(", ")) if inside else ()


# ====================================================================== gradcheck
def test_gradcheck_passes_a_correct_backward_and_returns_true():
    assert gradcheck(Mish.apply, _x64(4, 5)) is True
    assert gradcheck(lambda a, b: (a @ b).exp(), _x64(3, 4), _x64(4, 2, seed=1)) is True


def test_gradcheck_catches_a_sign_flip_and_names_the_worst_element():
    x = _x64(3, 4)
    with pytest.raises(GradcheckError) as err:
        gradcheck(MishSignFlipped.apply, x)
    line = _first_line(err)
    assert "gradient of input 0 does not match" in line and "12 of 12 elements differ" in line
    idx = _index_in(line)
    # the numbers printed are minicnn's (sign-flipped) and the true derivative, times the upstream u
    u = stream(0, "gradcheck").standard_normal((3, 4))
    true = (u * _mish_grad(x.numpy()))[idx]
    assert _values_in(line, "analytical", "numerical") == pytest.approx((-true, true), rel=1e-5)
    assert idx == np.unravel_index(np.argmax(np.abs(2 * u * _mish_grad(x.numpy()))), (3, 4))
    assert "kink" not in str(err.value)
    assert x.grad is None  # the inputs were copied, not touched


def test_gradcheck_catches_a_wrong_reduction_in_the_second_input_only():
    x, b = _x64(5, 3), _x64(3, seed=1)
    with pytest.raises(GradcheckError) as err:
        gradcheck(AddBiasMeanReduced.apply, x, b)
    message = str(err.value)
    assert "input 1" in message and "input 0" not in message  # x's gradient is right
    u = stream(0, "gradcheck").standard_normal((5, 3))
    j = _index_in(message)[0]
    expected = (u.mean(0)[j], u.sum(0)[j])  # minicnn's mean, the true sum over the rows
    assert _values_in(message, "analytical", "numerical") == pytest.approx(expected, rel=1e-5)


def test_gradcheck_catches_batch_norm_without_the_xhat_term():
    x = mc.tensor(_rng(3).standard_normal((6, 3)) * 2 + 1, requires_grad=True)
    with pytest.raises(GradcheckError) as err:
        gradcheck(BatchNormNoXhatTerm.apply, x)
    line = _first_line(err)
    idx = _index_in(line)
    u = stream(0, "gradcheck").standard_normal((6, 3))
    # the analytical value is the wrong formula's, the numerical one the true derivative's
    wrong = (u - u.mean(0)) / np.sqrt(x.numpy().var(0) + 1e-5)
    expected = (wrong[idx], _batch_norm_dx(x.numpy(), u)[idx])
    assert _values_in(line, "analytical", "numerical") == pytest.approx(expected, rel=1e-5)


def test_gradcheck_checks_a_modules_parameters_and_restores_its_state():
    layer = Scale(3).double()
    x = _x64(4, 3, requires_grad=False)
    with pytest.raises(GradcheckError) as err:
        gradcheck(layer, x)
    assert "parameter weight" in str(err.value) and "input 0" not in str(err.value)
    np.testing.assert_array_equal(layer.weight.numpy(), np.ones(3))  # perturbations undone
    assert layer.weight.grad is None

    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).double()
    before = {k: v.numpy().copy() for k, v in bn.state_dict().items()}
    rng_state = mc.get_rng_state()
    assert gradcheck(bn, _x64(5, 3))  # the dropout mask is the same for every evaluation
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)  # running stats restored
    assert mc.get_rng_state() == rng_state


@pytest.mark.parametrize(
    "fn, x",
    [
        (F.relu, np.array([[0.0, 1.0, -0.5], [2.0, -1.0, 0.3]])),  # ReLU at 0
        (lambda t: F.max_pool2d(t, 2), np.ones((1, 1, 2, 4))),  # every window is a tie
    ],
    ids=["relu-at-0", "max-pool-ties"],
)
def test_gradcheck_explains_a_kink(fn, x):
    with pytest.raises(GradcheckError) as err:
        gradcheck(fn, mc.tensor(x, requires_grad=True))
    message = str(err.value)
    assert "sits on a kink: the one-sided differences disagree" in message
    assert "derivative from the" in message  # minicnn picked one side, as PyTorch does


def test_gradcheck_refuses_float32_and_non_float_inputs():
    messages = []
    with pytest.raises(TypeError, match=r"^gradcheck needs double precision: input 0 is float32\. Convert"):
        gradcheck(Mish.apply, mc.randn(3, requires_grad=True))
    with pytest.raises(TypeError, match=r"weight is float32\. Convert it with module\.double\(\)") as err:
        gradcheck(nn.Linear(3, 2), _x64(2, 3))
    messages.append(str(err.value))
    with pytest.raises(TypeError) as err:
        gradcheck(Mish.apply, mc.tensor(np.array([1, 2, 3])))
    assert str(err.value) == (
        "gradcheck: input 0 is a minicnn int64 Tensor of shape (3,), which cannot have a gradient, and no "
        "other input requires one; pass float64 tensors created with requires_grad=True"
    )
    with pytest.raises(ValueError, match=r"nothing requires a gradient \(input 0 is a minicnn float64") as e:
        gradcheck(Mish.apply, _x64(3, requires_grad=False))
    messages.append(str(e.value))
    assert all("\n" not in m for m in messages)


def test_gradcheck_integer_inputs_pass_through():
    target = mc.tensor(np.array([0, 2, 1]))
    assert gradcheck(lambda x, t: F.cross_entropy(x, t), _x64(3, 4), target)


# ====================================================================== compare_with_torch
def test_compare_with_torch_report_numbers_and_table():
    """A 1e-12 relative perturbation: every number of the table is checked against NumPy."""
    x = _rng(1).standard_normal((3, 4))
    report = compare_with_torch(lambda t: t * (1 + 1e-12), lambda t: t, x)
    assert isinstance(report, ParityReport) and report.ok
    out, grad = report.rows
    assert (out.name, out.shape, grad.name) == ("output", (3, 4), "input 0 grad")
    err = np.abs(x * (1 + 1e-12) - x)
    assert out.max_abs == pytest.approx(err.max(), rel=1e-3)
    assert out.max_rel == pytest.approx((err / (np.abs(x) + np.abs(x).max())).max(), rel=1e-3)
    table = str(report).splitlines()
    assert table[0] == "compare_with_torch(<lambda>, float64, cpu)"
    assert table[1].split() == "tensor shape max abs err max rel err tolerance ok".split()
    assert table[2].split()[-2:] == ["1e-10", "yes"]
    np.testing.assert_array_equal(report.torch_outputs[0], x)


def test_compare_with_torch_catches_a_sign_flip():
    x = _rng(2).standard_normal((3, 5))
    with pytest.raises(ParityError) as err:
        compare_with_torch(MishSignFlipped.apply, TF.mish, x)
    first = _first_line(err)
    assert first.startswith("compare_with_torch: input 0 grad: worst element [")
    assert "15 of 15 elements out of tolerance" in first
    idx = _index_in(first)
    u = err.value.report.upstream[0]  # the upstream gradient both were given
    true = (u * _mish_grad(x))[idx]
    assert _values_in(first, "minicnn", "PyTorch") == pytest.approx((-true, true), rel=1e-5)
    report = err.value.report
    assert [r.ok for r in report.rows] == [True, False]  # the output itself matches
    lines = str(err.value).splitlines()  # first line, title, header, output, input 0 grad
    assert lines[4].startswith("input 0 grad") and lines[4].endswith("NO") and lines[3].endswith("yes")


def test_compare_with_torch_catches_a_wrong_reduction_and_batch_norm_without_xhat():
    x, b = _rng(3).standard_normal((5, 3)), _rng(4).standard_normal(3)
    with pytest.raises(ParityError) as err:
        compare_with_torch(AddBiasMeanReduced.apply, lambda x, b: x + b, x, b)
    assert _first_line(err).startswith("compare_with_torch: input 1 grad: worst element [")
    assert [r.name for r in err.value.report.failures] == ["input 1 grad"]

    x = _rng(5).standard_normal((6, 3)) * 2 + 1
    torch_bn = lambda t: TF.batch_norm(t, None, None, training=True)  # noqa: E731
    with pytest.raises(ParityError) as err:
        compare_with_torch(BatchNormNoXhatTerm.apply, torch_bn, x)
    first = _first_line(err)
    idx = _index_in(first)
    u = err.value.report.upstream[0]  # the upstream gradient both were given
    assert first.startswith("compare_with_torch: input 0 grad: worst element")
    assert _values_in(first, "minicnn", "PyTorch")[1] == pytest.approx(_batch_norm_dx(x, u)[idx], rel=1e-5)


def test_compare_with_torch_modules_copy_weights_and_name_the_parameter():
    mine, theirs = Scale(4), TorchScale(4)
    weight = theirs.weight.detach().numpy().astype(np.float64)
    with pytest.raises(ParityError) as err:
        compare_with_torch(mine, theirs, (3, 4))
    assert _first_line(err).startswith("compare_with_torch: weight grad: worst element [")
    np.testing.assert_array_equal(mine.weight.numpy(), weight)  # copied from torch
    assert mine.weight.dtype == mc.float64  # converted to the compared dtype

    mine, theirs = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    weight = mine.weight.numpy().astype(np.float64)
    report = compare_with_torch(mine, theirs, (4, 3), source="mine")
    np.testing.assert_array_equal(theirs.weight.detach().numpy(), weight)
    assert [r.name for r in report.rows] == ["output", "input 0 grad", "weight grad", "bias grad"]


def test_compare_with_torch_compares_buffers():
    x = _rng(6).standard_normal((4, 3, 5, 5)) + 2
    report = compare_with_torch(nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3), x, dtype="float32")
    assert [r.name for r in report.rows if r.kind == "buffer"] == [
        "running_mean",
        "running_var",
        "num_batches_tracked",
    ]
    assert {r.tolerance for r in report.rows} == {"1e-4", "exact"}
    with pytest.raises(ParityError) as err:  # the output matches; the running statistics do not
        compare_with_torch(nn.BatchNorm2d(3, momentum=0.2), torch.nn.BatchNorm2d(3), x)
    assert {r.name for r in err.value.report.failures} == {"running_mean", "running_var"}


def test_compare_with_torch_one_line_errors():
    with pytest.raises(ParityError) as err:
        compare_with_torch(lambda t: t.sum(0), lambda t: t.sum(1), (2, 3))
    assert str(err.value) == "compare_with_torch: output: minicnn's shape (3,) differs from PyTorch's (2,)"
    with pytest.raises(ValueError) as err:
        compare_with_torch(nn.Sequential(nn.Linear(3, 2)), torch.nn.Linear(3, 2), (4, 3))
    assert str(err.value) == (
        "compare_with_torch: the state-dict keys differ: only in minicnn ['0.weight', '0.bias'], only in "
        "PyTorch ['weight', 'bias']; build the same layers in both (same names, same order)"
    )
    with pytest.raises(ValueError) as err:
        compare_with_torch(nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 5), (1, 3, 8, 8))
    assert str(err.value) == (
        "compare_with_torch: state-dict shapes differ: 'weight' is (4, 3, 3, 3) in minicnn but (4, 3, 5, 5) "
        "in PyTorch"
    )
    with pytest.raises(TypeError, match="^compare_with_torch: mine is a Module but theirs is <lambda>"):
        compare_with_torch(nn.ReLU(), lambda t: t, (2,))
    with pytest.raises(TypeError, match=r"grad= asks for the gradient of input 1, which is a numpy int64"):
        compare_with_torch(F.cross_entropy, TF.cross_entropy, (2, 3), np.array([0, 2]), grad=[True, True])


def test_compare_with_torch_labels_upstream_and_no_torch_grad():
    x, t = _rng(7).standard_normal((4, 3)), np.array([0, 2, 1, 1])
    report = compare_with_torch(F.cross_entropy, TF.cross_entropy, x, t, upstream=[np.array(2.0)])
    assert [r.name for r in report.rows] == ["output", "input 0 grad"]
    # an integer result has no gradient on either side: its indices compare exactly
    pooled = compare_with_torch(
        lambda a: F.max_pool2d(a, 2, return_indices=True), lambda a: TF.max_pool2d(a, 2, return_indices=True),
        (1, 2, 4, 4),
    )  # fmt: skip
    assert pooled.rows[1].tolerance == "exact" and pooled.rows[1].name == "output 1"


def test_compare_with_torch_names_a_missing_gradient():
    class Detached(Function):
        def forward(self, x):
            return x * 2.0

        def backward(self, g):
            return None

    with pytest.raises(ParityError) as err:
        compare_with_torch(Detached.apply, lambda t: t * 2.0, (3,))
    assert "input 0 grad: minicnn computed no gradient (PyTorch's largest is" in _first_line(err)


def test_torch_missing_is_a_one_line_error():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import minicnn.testing as T\n"  # importable without torch
        "assert T.gradcheck(lambda t: t * t, T.__name__ and __import__('minicnn').randn(3).double()"
        ".requires_grad_())\n"
        "try:\n    T.compare_with_torch(lambda t: t, lambda t: t, (2,))\n"
        "except ImportError as e:\n    print(type(e).__name__ + ': ' + str(e))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1
    assert out.stdout.startswith("ModuleNotFoundError: compare_with_torch compares minicnn with PyTorch")
    assert "pip install torch" in out.stdout


# ====================================================================== the comparison rule
def test_rule_atol_is_rtol_times_the_largest_reference():
    e = np.array([2.0, -1.0, 0.0])
    ok = compare_arrays(e + [0, 0, 0.99 * 2e-4], e, rtol=1e-4)  # 0 judged on the scale 2: atol 2e-4
    assert ok.ok and ok.max_rel == pytest.approx(0.99e-4)
    bad = compare_arrays(e + [0, 3.5e-4, 0], e, rtol=1e-4)  # allowed at -1: 2e-4 + 1e-4
    assert not bad.ok and bad.worst == (1,) and bad.bad == 1 and (bad.mine, bad.theirs) == (-1 + 3.5e-4, -1.0)
    nan = np.array([np.nan, np.inf, 1.0])
    assert compare_arrays(nan.copy(), nan, rtol=0.0).ok
    assert not compare_arrays(np.array([1.0, np.inf, 1.0]), nan, rtol=0.5).ok  # NaN must stay NaN
    ints = compare_arrays(np.array([1, 2, 3]), np.array([1, 2, 4]), rtol=1e-4)
    assert not ints.ok and ints.tolerance == "exact" and ints.worst == (2,)
    with pytest.raises(ParityError, match=r"^assert_close: x: worst element \[1\]: minicnn 1, PyTorch 2"):
        assert_close([0.0, 1.0], [0.0, 2.0], 1e-10, name="x")


# ====================================================================== optimizers and schedulers
def test_optimizer_trajectory_names_the_first_step_that_differs():
    report = compare_optimizer_with_torch(
        lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.5),
        lambda ps: torch.optim.RMSprop(ps, lr=0.01, momentum=0.5, foreach=False),
        [(3, 4), (5,)],
        steps=10,
    )
    names = ["param 0", "param 1", "group 0 lr (by step)", "group 0 momentum (by step)"]
    assert [r.name for r in report.rows] == names
    with pytest.raises(ParityError) as err:  # the first step has no dampening yet; the second has
        compare_optimizer_with_torch(
            lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.5),
            lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
            [(3, 4)],
            steps=5,
        )
    first = _first_line(err)
    assert first.startswith("compare_optimizer_with_torch: param 0: worst element [")
    assert first.endswith(": first off after step 2 (the element shown is from that step)")


def test_scheduler_trajectory_is_compared_every_step():
    with pytest.raises(ParityError) as err:
        compare_optimizer_with_torch(
            lambda ps: optim.SGD(ps, lr=0.1),
            lambda ps: torch.optim.SGD(ps, lr=0.1),
            [(2,)],
            steps=6,
            scheduler=(
                lambda o: optim.lr_scheduler.StepLR(o, step_size=3),
                lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=4),
            ),
        )
    failing = {r.name for r in err.value.report.failures}
    assert {"group 0 lr (by step)", "get_last_lr() (by step)"} <= failing
    lr_row = next(r for r in err.value.report.rows if r.name == "group 0 lr (by step)")
    # steps 3 (0.01 vs PyTorch's 0.1) and 6 (0.001 vs 0.01) differ; 0-2 and 4-5 agree
    assert lr_row.bad == 2 and lr_row.worst[0] in (3, 6)
