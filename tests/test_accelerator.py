"""``minicnn.accelerator`` (PyTorch's ``torch.accelerator``): on this machine without a GPU, each call
answers or fails as the installed PyTorch's does; on the CuPy stand-in (parity_tests/cupy_standin.py)
with one and two fake GPUs, it reads and switches CuPy's current GPU."""

from __future__ import annotations

import warnings

import pytest
import torch

import minicnn as mc
from minicnn import accelerator as acc
from parity_tests import cupy_standin
from parity_tests.cupy_standin import syncs

no_gpu_anywhere = pytest.mark.skipif(
    torch.cuda.is_available() or mc.cuda_available() or torch.accelerator.current_accelerator() is None,
    reason="compares with a CUDA build of PyTorch on a machine without a GPU (this machine has one, "
    "or PyTorch is a CPU-only build)",
)


def _outcome(fn):
    """('ok', value) or ('raises', exception type) for a call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001  (the type is the result compared)
            return ("raises", type(e).__name__), [str(w.message) for w in caught]
    return ("ok", value), [(w.category.__name__, str(w.message)) for w in caught]


# ============================================================ without a GPU: as PyTorch's CUDA wheel
@no_gpu_anywhere
def test_the_probes_a_script_calls_answer_as_pytorch():
    assert acc.is_available() is torch.accelerator.is_available() is False
    assert acc.device_count() == torch.accelerator.device_count() == 0
    assert acc.current_accelerator().type == torch.accelerator.current_accelerator().type == "cuda"
    assert acc.current_accelerator(check_available=True) is None
    assert torch.accelerator.current_accelerator(check_available=True) is None
    # the example scripts' device choice gives the CPU in both
    mine = acc.current_accelerator() if acc.is_available() else mc.device("cpu")
    accel = torch.accelerator
    theirs = accel.current_accelerator() if accel.is_available() else torch.device("cpu")
    assert str(mine) == str(theirs) == "cpu"


CALLS = [
    ("current_device_index", ()),
    ("synchronize", ()),
    ("synchronize", (None,)),
    ("synchronize", (-1,)),
    ("synchronize", (0,)),
    ("synchronize", ("cuda",)),
    ("synchronize", ("cuda:1",)),
    ("synchronize", ("cpu",)),
    ("set_device_index", (-1,)),
    ("set_device_index", (0,)),
    ("set_device_index", ("cuda:1",)),
    ("set_device_index", ("cuda",)),
    ("set_device_index", ("cpu",)),
    ("set_device_index", (None,)),
    ("set_device_index", (1.5,)),
    ("current_device_idx", ()),
    ("set_device_idx", (0,)),
    ("set_device_idx", (-1,)),
]


@no_gpu_anywhere
@pytest.mark.parametrize("name, args", CALLS, ids=lambda v: repr(v))
def test_each_call_succeeds_or_fails_as_pytorch(name, args):
    mine, my_warnings = _outcome(lambda: getattr(acc, name)(*args))
    theirs, their_warnings = _outcome(lambda: getattr(torch.accelerator, name)(*args))
    assert mine == theirs
    assert my_warnings == their_warnings  # the deprecated names' FutureWarning, word for word


@no_gpu_anywhere
def test_devices_as_objects_are_read_as_pytorch_reads_them():
    pairs = [(mc.device("cpu"), torch.device("cpu")), (mc.device("cuda", 0), torch.device("cuda", 0))]
    for mine, theirs in pairs:
        assert (
            _outcome(lambda m=mine: acc.synchronize(m))[0]
            == _outcome(lambda t=theirs: torch.accelerator.synchronize(t))[0]
        )
        assert (
            _outcome(lambda m=mine: acc.set_device_index(m))[0]
            == _outcome(lambda t=theirs: torch.accelerator.set_device_index(t))[0]
        )


def test_without_a_gpu_the_error_says_why():
    if mc.cuda_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match=r"current_device_index: no GPU can be used \(CuPy"):
        acc.current_device_index()
    with pytest.raises(ValueError, match="cpu doesn't match the current accelerator cuda"):
        acc.synchronize("cpu")


def test_the_deprecated_names_are_pytorchs():
    assert set(acc.__all__) <= set(torch.accelerator.__all__)
    for name in (
        "is_available",
        "current_accelerator",
        "device_count",
        "current_device_index",
        "set_device_index",
        "synchronize",
        "current_device_idx",
        "set_device_idx",
    ):
        assert name in acc.__all__ and name in torch.accelerator.__all__
    assert mc.accelerator is acc


# ============================================================ on CUDA through CuPy (the stand-in)
def test_one_gpu():
    with cupy_standin.installed(devices=1):
        assert acc.is_available() and acc.device_count() == 1
        assert acc.current_device_index() == 0
        assert acc.current_accelerator() == mc.device("cuda:0")
        assert acc.current_accelerator(check_available=True) == mc.device("cuda:0")
        x = mc.ones(3, device=acc.current_accelerator())
        assert x.device == mc.device("cuda:0")
        with pytest.raises(RuntimeError, match="GPU 1 does not exist: CuPy sees 1 GPU"):
            acc.set_device_index(1)


def test_two_gpus_set_and_read_the_current_one():
    with cupy_standin.installed(devices=2):
        assert acc.device_count() == 2
        acc.set_device_index(1)
        assert acc.current_device_index() == 1 == cupy_standin.current_device() == mc.cuda.current_device()
        assert acc.current_accelerator() == mc.device("cuda:1")
        assert mc.zeros(2, device=acc.current_accelerator()).device == mc.device("cuda:1")
        acc.set_device_index("cuda:0")
        assert acc.current_device_index() == 0
        acc.set_device_index(mc.device("cuda", 1))
        assert acc.current_device_index() == 1
        acc.set_device_index(-1)  # a no-op, as PyTorch
        assert acc.current_device_index() == 1
        with pytest.warns(FutureWarning, match="Use `set_device_index` instead"):
            acc.set_device_idx(0)
        with pytest.warns(FutureWarning, match="Use `current_device_index` instead"):
            assert acc.current_device_idx() == 0
        with pytest.raises(ValueError, match="expected a device with an index"):
            acc.set_device_index("cuda")


def test_synchronize_waits_for_the_gpu_it_names():
    with cupy_standin.installed(devices=2):
        for device in (None, 0, 1, "cuda", "cuda:1", mc.device("cuda", 0)):
            syncs.clear()
            acc.synchronize(device)
            assert syncs.kinds() == ["Device.synchronize()"], device
        syncs.clear()
        acc.synchronize(-1)
        assert len(syncs) == 0
        with pytest.raises(ValueError, match="cpu doesn't match"):
            acc.synchronize("cpu")
