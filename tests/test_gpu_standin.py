"""minicnn's GPU code path without a GPU: the CuPy stand-in itself, foreign GPU arrays, cuda:N, the GPU
random state, and zero host synchronisations in a training step (parity_tests/cupy_standin.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import minicnn as mc
from minicnn import backend, nn, optim
from minicnn import random as mc_random
from minicnn.nn import functional as F
from parity_tests import cupy_standin
from parity_tests.cupy_standin import cupy as cp
from parity_tests.cupy_standin import syncs, transfers


@pytest.fixture
def standin():
    """The stand-in as minicnn's CuPy with one fake GPU (kernels off: the GPU path is the textbook tier)."""
    with cupy_standin.installed(devices=1), mc.use_kernels(False):
        yield cp


@pytest.fixture
def two_gpus():
    with cupy_standin.installed(devices=2), mc.use_kernels(False):
        yield cp


class ForeignGpuArray:
    """Another library's GPU array (a PyTorch CUDA tensor, a Numba device array): only
    ``__cuda_array_interface__``, no ``__array__``. Its "device pointer" is a NumPy array's address,
    which the stand-in can read, as CuPy reads the real one."""

    def __init__(self, values):
        self.host = np.ascontiguousarray(values)

    @property
    def __cuda_array_interface__(self):
        return {
            "shape": self.host.shape,
            "typestr": self.host.dtype.str,
            "data": (self.host.ctypes.data, False),
            "strides": None,
            "version": 3,
        }


# ============================================================ the stand-in refuses what CuPy refuses
def test_implicit_conversion_to_numpy_is_refused(standin):
    x = cp.arange(3.0)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(x)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.testing.assert_allclose(x, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(x.get(), [0.0, 1.0, 2.0])


def test_numpy_arrays_in_device_operations_are_refused(standin):
    x = cp.ones(3)
    for op in (lambda: x + np.ones(3), lambda: np.ones(3) * x, lambda: cp.maximum(x, np.zeros(3))):
        with pytest.raises(TypeError, match="Unsupported type"):
            op()
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        x[:] = np.zeros(3)
    x[:] = np.float32(2.0)  # scalars are fine
    x[:] = 3
    assert (x == 3).all().item()


def test_where_wants_a_device_array_condition(standin):
    """CuPy's where calls condition.astype: a Python bool, a number or a NumPy array fails there."""
    x = cp.ones(3)
    for condition in (True, 1, np.array([True, False, True])):
        with pytest.raises(TypeError, match="condition must be a cupy.ndarray"):
            cp.where(condition, x, 0.0)
    assert cp.where(x > 0, x, 0.0).shape == (3,)  # Python scalars as x and y are fine


def test_routines_that_need_arrays_refuse_scalars(standin):
    for call in (lambda: cp.expand_dims(2.0, 0), lambda: cp.sum(3), lambda: cp.stack([cp.ones(2), 1.0])):
        with pytest.raises(TypeError, match="must be a cupy.ndarray"):
            call()


@pytest.mark.parametrize("dtype", [object, str, "U3", "S2", "V8", "datetime64[s]"])
def test_object_string_and_other_non_numeric_dtypes_are_refused(standin, dtype):
    with pytest.raises(ValueError, match="Unsupported dtype"):
        cp.zeros(2, dtype=dtype)
    with pytest.raises(ValueError, match="Unsupported dtype"):
        cp.ones(2).astype(dtype)


def test_host_data_of_a_non_numeric_dtype_is_refused(standin):
    with pytest.raises(ValueError, match="Unsupported dtype"):
        cp.asarray(["a", "b"])
    with pytest.raises(ValueError, match="Unsupported dtype"):
        cp.asarray(np.array([1, None], dtype=object))


def test_reductions_and_integer_indexing_give_0d_device_arrays(standin):
    x = cp.arange(6.0).reshape(2, 3)
    for r in (x.sum(), x.max(), cp.max(x), cp.sum(x), x.mean(), x.argmax(), x[1, 2], x.any(), cp.amax(x)):
        assert type(r) is cp.ndarray and r.ndim == 0, type(r)
    assert type(x.sum(axis=0)) is cp.ndarray


def test_unknown_names_fail_loudly(standin):
    import cupyx  # the stand-in's, while it is installed

    with pytest.raises(
        AttributeError, match=r"cupy\.fancy_new_routine: the CuPy stand-in .* does not provide it"
    ):
        cp.fancy_new_routine  # noqa: B018
    with pytest.raises(AttributeError, match=r"cupyx\.something: the CuPy stand-in"):
        cupyx.something  # noqa: B018
    with pytest.raises(AttributeError, match="has no `normal`"):
        cp.random.Generator(cp.random.XORWOW(0)).normal(size=3)


def test_cupyx_is_the_standins_only_while_installed():
    import sys

    before = sys.modules.get("cupyx")
    with cupy_standin.installed():
        assert sys.modules["cupyx"] is cupy_standin.cupyx
    assert sys.modules.get("cupyx") is before


# ============================================================ the stand-in counts host synchronisations
@pytest.mark.parametrize(
    "sync, kind",
    [
        (lambda x: bool(x[0] > 0), "bool()"),
        (lambda x: float(x.sum()), "float()"),
        (lambda x: int(x.argmax()), "int()"),
        (lambda x: x.sum().item(), ".item()"),
        (lambda x: x.tolist(), ".tolist()"),
        (lambda x: x.get(), ".get()"),
        (lambda x: cp.asnumpy(x), "cupy.asnumpy()"),
        (lambda x: range(10)[x.argmax()], "operator.index()"),
        (lambda x: x[x > 1], "boolean-mask indexing"),
        (lambda x: cp.nonzero(x), "nonzero()"),
        (lambda x: cp.where(x > 1), "where(condition) (nonzero)"),
        (lambda x: repr(x), "repr()"),
        (lambda x: f"{x.sum():.2f}", "format()"),
        (lambda x: cp.cuda.Device().synchronize(), "Device.synchronize()"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_each_host_synchronisation_is_counted_with_where_it_happened(standin, sync, kind):
    x = cp.arange(4.0)
    syncs.clear()
    sync(x)
    assert syncs.kinds() == [kind]
    assert "tests/test_gpu_standin.py" in syncs.events[0][1]  # where: the line of the lambda above


def test_device_work_is_not_counted(standin):
    x = cp.arange(12.0).reshape(3, 4)
    syncs.clear()
    y = cp.where(x > 2, cp.exp(x), 0.0).sum(axis=1) / x.max()
    y[0] = y[1]
    x[:, 1] += 1.0
    cp.maximum(x, 0, out=x)
    assert len(syncs) == 0, syncs.report()
    assert len(y) == 3 and [type(v) for v in y] == [cp.ndarray] * 3  # iteration: no sync either


def test_host_to_device_copies_are_counted_apart(standin):
    transfers.clear()
    syncs.clear()
    cp.asarray([1.0, 2.0])
    cp.asarray(np.ones(3))
    assert len(transfers) == 2 and len(syncs) == 0


# ====================================================================== devices
def test_arrays_of_another_gpu_than_the_current_one_are_refused(two_gpus):
    with cp.cuda.Device(1):
        x = cp.ones(3)
    assert x.device.id == 1 and cupy_standin.current_device() == 0
    with pytest.raises(ValueError, match=r"resides \(1\) is different from the current device \(0\)"):
        x + 1
    with pytest.raises(ValueError, match="different from the current device"):
        x.sum()
    assert x.reshape(3, 1).device.id == 1  # a view runs no kernel
    with cp.cuda.Device(1):
        assert (x + 1).device.id == 1
    assert cp.asarray(x).device.id == 0  # asarray copies across GPUs, as CuPy


def test_a_generator_draws_only_with_its_gpu_current(two_gpus):
    with cp.cuda.Device(1):
        gen = cp.random.Generator(cp.random.XORWOW(seed=0))
        assert gen.random(3).device.id == 1
    with pytest.raises(ValueError, match="XORWOW state lives on device 1 but device 0 is current"):
        gen.random(3)


# ====================================================================== the hook and the reasons
def test_the_standin_is_minicnns_cupy_only_while_installed():
    real_available = mc.cuda_available()
    with cupy_standin.installed():
        assert mc.cuda_available() and backend.cupy_module() is cp
        x = mc.randn(2, 3, device="cuda")
        assert x.is_cuda and x.device == "cuda:0" and backend.is_cupy_array(x.array)
        assert x.to("cpu").device == "cpu" and isinstance(x.numpy(), np.ndarray)
    assert mc.cuda_available() == real_available
    assert not backend.is_cupy_array(x.array)  # the stand-in's type is forgotten too


def _reset_cupy_state(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_cupy_checked", False)
    monkeypatch.setattr(backend, "_cupy_error", None)


def test_cupy_not_installed_is_reported_as_such(monkeypatch):
    import sys

    _reset_cupy_state(monkeypatch)
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError(name="cupy")
    assert not backend.cuda_available()
    assert backend.cuda_unavailable_reason() == "CuPy is not installed"
    with pytest.raises(RuntimeError, match=r"pip install cupy-cuda12x.*\(CuPy is not installed\.\)"):
        backend.cupy_module()


def test_a_broken_cupy_install_is_reported_with_the_exceptions_text(monkeypatch):
    """An old driver: cupy imports, then the first CUDA call fails. The reason names the error, so the
    skips and minicnn.check say "CuPy is installed but failed", not "no GPU here"."""
    import sys
    import types

    class CUDARuntimeError(RuntimeError):
        pass

    def get_device_count():
        raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    _reset_cupy_state(monkeypatch)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    reason = backend.cuda_unavailable_reason()
    assert reason == (
        "CuPy is installed but failed: CUDARuntimeError: cudaErrorInsufficientDriver: CUDA driver version "
        "is insufficient"
    )
    with pytest.raises(RuntimeError, match="CuPy is installed but failed: CUDARuntimeError"):
        mc.zeros(2, device="cuda")
    assert "CuPy is installed but failed: CUDARuntimeError" in cupy_standin.describe_cuda_parameter()


def test_a_cupy_that_cannot_load_its_libraries_is_reported_with_the_exceptions_text(monkeypatch):
    """A wheel for another CUDA version: `import cupy` itself fails, with an ImportError about a library."""
    import importlib.abc
    import importlib.machinery
    import sys

    class Loader(importlib.abc.Loader):
        def create_module(self, spec):
            return None

        def exec_module(self, module):
            raise ImportError("libcudart.so.13: cannot open shared object file", name="cupy_backends.cuda")

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            return importlib.machinery.ModuleSpec(name, Loader()) if name == "cupy" else None

    _reset_cupy_state(monkeypatch)
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    assert backend.cuda_unavailable_reason() == (
        "CuPy is installed but failed: ImportError: libcudart.so.13: cannot open shared object file"
    )


def test_require_cuda_turns_the_cuda_skips_into_failures(monkeypatch):
    _reset_cupy_state(monkeypatch)
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.delenv("MINICNN_REQUIRE_CUDA", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs a real GPU: CuPy is not installed"):
        cupy_standin.skip_without_real_gpu()
    with cupy_standin.cuda_for_tests() as kind:  # no GPU: the cuda parameter runs on the stand-in
        assert kind == "standin" and backend.cupy_module() is cp
    monkeypatch.setenv("MINICNN_REQUIRE_CUDA", "1")
    with pytest.raises(
        pytest.fail.Exception, match="MINICNN_REQUIRE_CUDA=1 but there is no usable GPU: CuPy is"
    ):
        with cupy_standin.cuda_for_tests():
            pass
    with pytest.raises(pytest.fail.Exception, match="needs a real GPU: CuPy is not installed"):
        cupy_standin.skip_without_real_gpu()
    assert "FAILS (MINICNN_REQUIRE_CUDA=1" in cupy_standin.describe_cuda_parameter()


# ====================================================================== arrays of other GPU libraries
def test_foreign_gpu_arrays_need_cupy_without_one():
    if mc.cuda_available():
        pytest.skip("a GPU is present")
    foreign = ForeignGpuArray(np.arange(3.0))
    for make in (lambda: mc.tensor(foreign), lambda: mc.from_numpy(foreign), lambda: mc.Tensor(foreign)):
        with pytest.raises(RuntimeError, match="CuPy is needed for device 'cuda'"):
            make()


def test_foreign_gpu_arrays_become_gpu_tensors_at_every_entry_point(standin):
    values = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    foreign = ForeignGpuArray(values)
    copied = mc.tensor(foreign)
    shared = mc.from_numpy(foreign)
    made = mc.Tensor(foreign)
    for t in (copied, shared, made):
        assert t.device == "cuda:0" and t.is_cuda and t.dtype == mc.float32
        np.testing.assert_array_equal(t.numpy(), values)
    foreign.host[0, 0] = 100.0  # from_numpy shares memory (as with NumPy); tensor() copies, as PyTorch
    assert shared.numpy()[0, 0] == 100.0 and copied.numpy()[0, 0] == 0.0
    assert mc.tensor(ForeignGpuArray(values), device="cpu").device == "cpu"
    assert isinstance(backend.to_device(ForeignGpuArray(values), "cpu"), np.ndarray)
    np.testing.assert_array_equal(backend.to_numpy(ForeignGpuArray(values)), values)
    target = mc.zeros(2, 3, device="cuda")
    target.copy_(ForeignGpuArray(values))
    np.testing.assert_array_equal(target.numpy(), values)


def test_load_state_dict_takes_foreign_gpu_arrays(standin):
    layer = nn.Linear(3, 2).to("cuda")
    weight = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    layer.load_state_dict(
        {"weight": ForeignGpuArray(weight), "bias": ForeignGpuArray(np.ones(2, np.float32))}
    )
    assert layer.weight.device == "cuda:0"
    np.testing.assert_array_equal(layer.weight.numpy(), weight)
    cpu_layer = nn.Linear(3, 2)
    cpu_layer.load_state_dict(
        {"weight": ForeignGpuArray(weight), "bias": ForeignGpuArray(np.ones(2, np.float32))}
    )
    assert isinstance(cpu_layer.weight.array, np.ndarray)
    np.testing.assert_array_equal(cpu_layer.weight.numpy(), weight)


# ====================================================================== cuda:N
def test_creation_functions_allocate_on_the_requested_gpu(two_gpus):
    makers = [
        lambda: mc.zeros(2, device="cuda:1"),
        lambda: mc.ones(2, device="cuda:1"),
        lambda: mc.full((2,), 3.0, device="cuda:1"),
        lambda: mc.empty(2, device="cuda:1"),
        lambda: mc.arange(3, device="cuda:1"),
        lambda: mc.linspace(0, 1, 3, device="cuda:1"),
        lambda: mc.eye(2, device="cuda:1"),
        lambda: mc.randn(2, device="cuda:1"),
        lambda: mc.rand(2, device="cuda:1"),
        lambda: mc.randint(0, 5, (3,), device="cuda:1"),
        lambda: mc.tensor([1.0, 2.0], device="cuda:1"),
        lambda: mc.zeros_like(mc.zeros(2, device="cuda:1")),
        lambda: mc.full_like(mc.zeros(2, device="cuda:1"), 2.0),
        lambda: mc.zeros(2, device="cuda:1").new_zeros(3),
        lambda: mc.zeros(2, device="cuda:1").new_full((3,), 1.0),
        lambda: mc.zeros(2).to("cuda:1"),
    ]
    for make in makers:
        t = make()
        assert t.device == "cuda:1", make
        assert cupy_standin.current_device() == 0  # nothing leaves GPU 1 current behind


def test_minicnn_cuda_helpers_with_two_gpus(two_gpus):
    assert mc.cuda.is_available() and mc.cuda.unavailable_reason() is None
    assert mc.cuda.device_count() == 2 and mc.cuda.current_device() == 0
    with mc.cuda.device(1):
        assert mc.cuda.current_device() == 1
    assert mc.cuda.current_device() == 0
    syncs.clear()
    mc.cuda.synchronize("cuda:1")
    assert syncs.kinds() == ["Device.synchronize()"]


def test_ops_and_backward_run_on_the_tensors_gpu(two_gpus):
    x = mc.randn(4, 3, device="cuda:1", requires_grad=True)
    w = mc.randn(3, 2, device="cuda:1", requires_grad=True)
    y = (x @ w).relu()
    loss = F.cross_entropy(y, mc.tensor([0, 1, 1, 0], device="cuda:1"))
    assert y.device == "cuda:1" and loss.device == "cuda:1"
    loss.backward()
    assert x.grad.device == "cuda:1" and w.grad.device == "cuda:1"
    mask = (y > 0) & (y < 1)  # comparisons and logic outside Function.apply
    assert mask.device == "cuda:1" and (~mask).device == "cuda:1" and mask.any().device == "cuda:1"
    assert F.dropout(y, 0.5).device == "cuda:1"
    assert cupy_standin.current_device() == 0


def test_backward_across_gpus_sends_each_gradient_to_its_gpu(two_gpus):
    a = mc.randn(3, device="cuda:0", requires_grad=True)
    b = a.to("cuda:1") * 2.0
    c = b.to("cuda:0").sum() + (a * 3.0).sum()
    c.backward()
    assert a.grad.device == "cuda:0"
    np.testing.assert_allclose(a.grad.numpy(), np.full(3, 5.0))


def test_a_model_trains_on_the_second_gpu(two_gpus):
    """forward, backward and the optimizer step of a small CNN on cuda:1 while cuda:0 is current."""
    mc.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 4 * 4, 3)).to("cuda:1")  # fmt: skip
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = mc.randn(2, 1, 8, 8, device="cuda:1")
    y = mc.tensor([0, 2], device="cuda:1")
    for _ in range(2):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    assert all(p.device == "cuda:1" for p in model.parameters())
    assert cupy_standin.current_device() == 0


# ====================================================================== GPU random state
def _masks(n, device="cuda", shape=(4, 5)):
    x = mc.ones(*shape, device=device)
    return [F.dropout(x, 0.5).numpy() for _ in range(n)]


def test_set_rng_state_replays_the_gpu_stream(standin):
    mc.manual_seed(3)
    first = _masks(2)
    state = mc.get_rng_state()
    expected = _masks(3)
    assert not np.array_equal(expected[0], expected[1])
    mc.set_rng_state(state)
    assert all(np.array_equal(a, b) for a, b in zip(_masks(3), expected))
    assert not np.array_equal(first[0], expected[0])


def test_the_gpu_state_is_json_and_resumes_in_a_fresh_process(standin):
    """What save_training_state stores: a resumed run draws the masks the uninterrupted run drew,
    instead of replaying the first epoch's."""
    mc.manual_seed(7)
    _masks(5)  # epoch 1
    saved = json.loads(json.dumps(mc.get_rng_state()))
    epoch2 = _masks(5)
    mc_random._forget_cuda_generators()  # as a new process: no generator yet
    mc.manual_seed(7)
    mc.set_rng_state(saved)
    resumed = _masks(5)
    assert all(np.array_equal(a, b) for a, b in zip(resumed, epoch2))
    assert saved["cuda"]["devices"]["0"]["draws"] == [["random", [[4, 5]], {"dtype": "float32"}, 5]]


def test_a_long_draw_log_is_folded_into_a_reseed_at_the_same_point_for_both_runs(standin, monkeypatch):
    monkeypatch.setattr(mc_random, "_MAX_LOG", 4)
    shapes = [(2, n) for n in range(1, 12)]  # every draw a new entry: folds after 5, 10

    def run(resume_at=None):
        mc.manual_seed(1)
        out = []
        for i, shape in enumerate(shapes):
            if i == resume_at:
                state = json.loads(json.dumps(mc.get_rng_state()))
                mc_random._forget_cuda_generators()
                mc.set_rng_state(state)
            out.append(_masks(1, shape=shape)[0])
        return out, mc.get_rng_state()

    straight, end_state = run()
    assert end_state["cuda"]["devices"]["0"]["folds"] == 2
    assert len(end_state["cuda"]["devices"]["0"]["draws"]) == 1
    for resume_at in (3, 5, 7):
        resumed, _ = run(resume_at)
        assert all(np.array_equal(a, b) for a, b in zip(resumed, straight)), resume_at


def test_each_gpu_has_its_own_generator_state(two_gpus):
    mc.manual_seed(0)
    _masks(1, "cuda:1")
    state = mc.get_rng_state()
    assert list(state["cuda"]["devices"]) == ["1"]
    a = _masks(2, "cuda:1")
    mc.set_rng_state(state)
    assert all(np.array_equal(x, y) for x, y in zip(_masks(2, "cuda:1"), a))


def test_a_state_from_an_older_minicnn_without_gpu_state_is_accepted(standin):
    mc.manual_seed(5)
    fresh = _masks(1)
    old_style = {k: v for k, v in mc.get_rng_state().items() if k != "cuda"}
    _masks(3)
    mc.set_rng_state(old_style)
    assert np.array_equal(_masks(1)[0], fresh[0])  # the GPU stream restarts from the seed


def test_training_checkpoints_store_the_gpu_state(standin, tmp_path):
    mc.manual_seed(2)
    model = nn.Linear(3, 2).to("cuda")
    _masks(2)
    mc.save_training_state(tmp_path / "state.safetensors", model, epoch=1)
    after = _masks(2)
    mc_random._forget_cuda_generators()
    mc.load_training_state(tmp_path / "state.safetensors", model)
    assert all(np.array_equal(a, b) for a, b in zip(_masks(2), after))


# ============================================================ no host synchronisation in a training step
def _training_step(model, opt, x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


@pytest.mark.parametrize("name", ["mnist", "cifar"])
def test_a_training_step_makes_no_host_synchronisation(standin, name):
    """zero_grad, forward, cross-entropy, backward and the optimizer step of the MNIST CNN (Adam) and
    the CIFAR CNN (SGD momentum) never make the host wait for the GPU: every bool(), float(), int(),
    .item(), .get()... would stall each step until the GPU has caught up. (Small batches: what is
    counted does not depend on the batch size.)"""
    from minicnn import models

    mc.manual_seed(0)
    rng = np.random.default_rng(0)
    if name == "mnist":
        model, shape, batch = models.mnist_cnn(), (1, 28, 28), 4
    else:
        model, shape, batch = models.cifar_cnn(), (3, 32, 32), 4
    model.to("cuda").train()
    opt = (optim.Adam if name == "mnist" else optim.SGD)(
        model.parameters(), **({"lr": 1e-3} if name == "mnist" else {"lr": 0.01, "momentum": 0.9})
    )
    x = mc.tensor(rng.standard_normal((batch, *shape)).astype(np.float32), device="cuda")
    y = mc.tensor(rng.integers(0, 10, batch), device="cuda")
    _training_step(model, opt, x, y)  # warm-up: optimizer state, lazily made buffers
    syncs.clear()
    transfers.clear()
    loss = _training_step(model, opt, x, y)
    assert len(syncs) == 0, syncs.report(full=True)
    assert loss.device == "cuda:0" and np.isfinite(loss.item())


def test_the_mnist_example_runs_end_to_end_on_the_gpu_path(standin, tmp_path, monkeypatch, capsys):
    """examples/mnist_cnn.py --device cuda: data loader, fit, evaluation, checkpoint and report on the
    GPU code path (what the first GPU run does for 5 epochs)."""
    import importlib
    from pathlib import Path

    from tests.test_data import write_mnist_raw

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    write_mnist_raw(tmp_path / "data")
    mnist = importlib.import_module("mnist_cnn")
    out = str(tmp_path / "out")
    argv = ["--data-dir", str(tmp_path / "data"), "--device", "cuda", "--batch-size", "4",
            "--limit-train", "8", "--epochs", "1", "--out", out, "--no-progress"]  # fmt: skip
    acc = mnist.main(argv)
    assert 0.0 <= acc <= 1.0
    text = capsys.readouterr().out
    assert "device: cuda" in text and "test accuracy:" in text
    assert (tmp_path / "out" / "checkpoint.safetensors").is_file()
