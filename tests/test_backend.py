"""Backends and devices: Device parsing, the CuPy-missing message, mixing devices, array helpers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import minicnn as mc
from minicnn import backend
from minicnn.backend import Device, device_of, get_array_module, scatter_add, to_device, to_numpy

needs_no_gpu = pytest.mark.skipif(
    mc.cuda_available(), reason="a GPU is present: CuPy's absence can't be tested"
)


# ====================================================================== Device
@pytest.mark.parametrize(
    "spec, type_, index, text",
    [
        ("cpu", "cpu", None, "cpu"),
        ("CPU", "cpu", None, "cpu"),
        ("cpu:0", "cpu", None, "cpu"),  # accepted by torch.device too
        ("cuda", "cuda", 0, "cuda:0"),
        ("cuda:1", "cuda", 1, "cuda:1"),
        (" Cuda:12 ", "cuda", 12, "cuda:12"),
        ("gpu", "cuda", 0, "cuda:0"),
        ("gpu:3", "cuda", 3, "cuda:3"),
    ],
)
def test_device_parsing(spec, type_, index, text):
    d = Device(spec)
    assert (d.type, d.index, str(d)) == (type_, index, text)
    expected = "device(type='cpu')" if type_ == "cpu" else f"device(type='cuda', index={index})"
    assert repr(d) == expected  # as torch.device
    assert Device(d) == d and mc.device(spec) == d
    assert d == text and hash(d) == hash(Device(text))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("tpu", r"unknown device 'tpu': expected 'cpu', 'cuda' or 'cuda:N'"),
        ("cuda:x", r"unknown device 'cuda:x': the GPU index must be a number, as in 'cuda:0'"),
        ("cuda:-1", r"the GPU index must be a number"),
        ("cuda:", r"the GPU index must be a number"),
        ("cpu:1", r"unknown device 'cpu:1'"),
        ("", r"unknown device ''"),
    ],
)
def test_bad_device_strings_raise_a_clear_value_error(spec, message):
    with pytest.raises(ValueError, match=message):
        Device(spec)


@pytest.mark.parametrize("spec", [0, None, 1.5, ["cpu"]])
def test_non_string_devices_raise_type_error(spec):
    with pytest.raises(TypeError, match="device must be a string like 'cpu', 'cuda' or 'cuda:1'"):
        Device(spec)


def test_device_equality():
    assert Device("cuda") == Device("cuda:0") == "cuda:0" == Device("gpu")
    assert Device("cuda:0") != Device("cuda:1")
    assert Device("cpu") != "cuda" and Device("cpu") != "not a device" and Device("cpu") != 3
    assert len({Device("cpu"), Device("cpu:0"), Device("cuda"), Device("cuda:0"), Device("cuda:1")}) == 3


def test_cpu_device_uses_numpy():
    assert Device("cpu").xp is np
    assert get_array_module(np.zeros(2), 3.0, None) is np
    assert get_array_module() is np


# ====================================================================== CuPy missing
@needs_no_gpu
def test_cuda_without_cupy_explains_how_to_install_it():
    assert not mc.cuda_available()
    with pytest.raises(RuntimeError, match=r"pip install cupy-cuda12x"):
        backend.cupy_module()
    with pytest.raises(RuntimeError, match=r"pip install cupy-cuda12x"):
        Device("cuda").xp  # noqa: B018


@needs_no_gpu
@pytest.mark.parametrize(
    "make",
    [
        lambda: mc.randn(2, 3).to("cuda"),
        lambda: mc.randn(2, 3).cuda(),
        lambda: mc.tensor([1.0, 2.0], device="cuda"),
        lambda: mc.zeros(2, device="cuda:0"),
        lambda: mc.randn(2, device="cuda"),
    ],
    ids=["to", "cuda()", "tensor", "zeros", "randn"],
)
def test_moving_to_cuda_without_cupy_raises_runtime_error(make):
    with pytest.raises(RuntimeError, match=r"CuPy is needed for device 'cuda'.*pip install cupy-cuda12x"):
        make()


# ====================================================================== mixing devices
class _FakeGpuArray(np.ndarray):
    """A NumPy array that claims to be a CuPy array on GPU 1.

    ``device_of`` recognises CuPy arrays by their module and reads ``.device.id``, exactly as for
    real CuPy arrays; so without a GPU this exercises the real device check of every op (which
    runs before any GPU computation would start).
    """

    __module__ = "cupy._core.core"

    @property
    def device(self):
        return SimpleNamespace(id=1)


def _on_fake_gpu(values):
    return mc.Tensor._make(np.asarray(values, dtype=np.float32).view(_FakeGpuArray))


def test_fake_gpu_array_is_seen_on_cuda_1():
    assert backend.is_cupy_array(_on_fake_gpu([1.0]).array)
    assert device_of(_on_fake_gpu([1.0]).array) == "cuda:1"
    assert _on_fake_gpu([1.0]).device == Device("cuda:1")
    assert device_of(np.zeros(1)) == "cpu"


@pytest.mark.parametrize(
    "op, name",
    [
        (lambda a, b: a + b, "Add"),
        (lambda a, b: b * a, "Mul"),
        (lambda a, b: a @ b, "MatMul"),
        (lambda a, b: mc.cat([a, b]), "Cat"),
        (lambda a, b: mc.stack([b, a]), "Stack"),
        (lambda a, b: mc.where(a > 0, a, b), "Where"),
    ],
    ids=["add", "mul", "matmul", "cat", "stack", "where"],
)
def test_mixing_devices_in_an_op_names_both_devices(op, name):
    cpu = mc.tensor([1.0, 2.0], requires_grad=True)
    gpu = _on_fake_gpu([3.0, 4.0])
    with pytest.raises(RuntimeError, match=rf"{name}: expected all tensors on the same device") as info:
        op(cpu, gpu)
    message = str(info.value)
    assert "cpu" in message and "cuda:1" in message


def test_mixing_devices_is_checked_by_the_autograd_apply_via_device_of(monkeypatch):
    # The same check, reached by pretending one plain NumPy array lives on cuda:1.
    from minicnn import autograd

    a, b = mc.tensor([1.0]), mc.tensor([2.0])
    real = autograd.device_of
    monkeypatch.setattr(autograd, "device_of", lambda arr: Device("cuda:1") if arr is b.array else real(arr))
    with pytest.raises(RuntimeError, match=r"Sub: .*found one on cpu and one on cuda:1.*tensor.to\('cpu'\)"):
        a - b
    monkeypatch.undo()
    assert (a - b).item() == -1.0


def test_backward_gradient_on_another_device_is_rejected():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"gradient is on cuda:1 but the tensor is on cpu"):
        y.backward(_on_fake_gpu([1.0, 1.0]))


# ====================================================================== array helpers
def test_to_device_cpu_is_a_no_op_and_to_numpy_gives_numpy():
    a = np.arange(6.0).reshape(2, 3)
    assert to_device(a, "cpu") is a
    assert to_numpy(a) is a
    assert isinstance(to_numpy([1, 2]), np.ndarray)


def test_scatter_add_sums_repeated_indices():
    rng = np.random.default_rng(0)
    index = rng.integers(0, 5, 40)  # many repeats
    values = rng.standard_normal(40)
    out = scatter_add(np.zeros(5), index, values)
    expected = np.bincount(index, weights=values, minlength=5)  # an independent computation
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_scatter_add_with_a_tuple_index():
    target = np.zeros((3, 4))
    rows, cols = np.array([0, 0, 2, 0]), np.array([1, 1, 3, 1])
    scatter_add(target, (rows, cols), np.array([1.0, 2.0, 5.0, 4.0]))
    expected = np.zeros((3, 4))
    expected[0, 1], expected[2, 3] = 7.0, 5.0
    np.testing.assert_array_equal(target, expected)
