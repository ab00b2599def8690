"""safetensors checkpoints: minicnn <-> PyTorch round trips bit for bit, training state resumes exactly,
damaged files give clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.torch
import torch

import minicnn as mc
from minicnn import models, nn, optim
from minicnn.serialization import load_metadata


def _randomise(model, seed):
    """Give every parameter and BatchNorm statistic a distinctive value (not the defaults)."""
    rng = np.random.default_rng(seed)
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            t.data[...] = 7
        elif name.endswith("running_var"):
            t.data[...] = rng.random(t.shape) + 0.5
        else:
            t.data[...] = rng.standard_normal(t.shape) * 0.1


@pytest.mark.parametrize("dtype", [mc.float32, mc.float64])
def test_round_trip_minicnn_torch_minicnn_bit_for_bit(tmp_path, dtype):
    model = models.mnist_cnn().to(dtype)
    _randomise(model, 0)
    original = {k: v.numpy().copy() for k, v in model.state_dict().items()}

    mc.save(model, tmp_path / "mine.safetensors")
    ref = models.mnist_cnn(layers=torch.nn).to(torch.float64 if dtype == mc.float64 else torch.float32)
    from_file = safetensors.torch.load_file(tmp_path / "mine.safetensors")
    assert from_file["1.num_batches_tracked"].shape == ()  # 0-d int64, as torch writes it
    ref.load_state_dict(from_file)  # strict
    tsd = ref.state_dict()
    assert tsd["1.num_batches_tracked"].dtype == torch.int64 and tsd["1.num_batches_tracked"].shape == ()
    for k, v in original.items():
        assert np.array_equal(tsd[k].numpy(), v) and tsd[k].numpy().dtype == v.dtype, k

    safetensors.torch.save_file(ref.state_dict(), tmp_path / "torch.safetensors")
    loaded = mc.load(tmp_path / "torch.safetensors")
    assert all(isinstance(t, mc.Tensor) for t in loaded.values())
    again = models.mnist_cnn().to(dtype)
    again.load_state_dict(loaded)
    for k, v in again.state_dict().items():
        assert np.array_equal(v.numpy(), original[k]) and v.dtype == original[k].dtype, k

    # the same eval-mode predictions in all three models
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(dtype)
    model.eval()
    again.eval()
    ref.eval()
    with mc.no_grad():
        p1 = model(mc.tensor(x)).numpy()
        p2 = again(mc.tensor(x)).numpy()
    np.testing.assert_array_equal(p1, p2)
    with torch.no_grad():
        pt = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(p1, pt, rtol=1e-10 if dtype == mc.float64 else 1e-4, atol=1e-5)
    assert (p1.argmax(1) == pt.argmax(1)).all()


def test_save_state_dict_of_arrays_and_metadata(tmp_path):
    path = tmp_path / "d.safetensors"
    mc.save(
        {"a": np.arange(6.0).reshape(2, 3), "b": mc.tensor([1, 2], dtype=mc.int32)}, path, metadata={"k": "v"}
    )
    d = mc.load(path)
    np.testing.assert_array_equal(d["a"].numpy(), np.arange(6.0).reshape(2, 3))
    assert d["b"].dtype == np.int32 and load_metadata(path) == {"k": "v"}
    with pytest.raises(TypeError, match="metadata must map str to str"):
        mc.save({"a": np.zeros(1)}, path, metadata={"epoch": 3})
    with pytest.raises(TypeError, match="cannot store a object at '1' without pickle"):
        mc.save([np.zeros(1), object()], path)  # (a list of arrays is a nested checkpoint: fine)


def test_damaged_or_missing_files_name_the_file(tmp_path):
    path = tmp_path / "model.safetensors"
    mc.save(models.mnist_cnn(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match=r"model\.safetensors.*not a valid safetensors checkpoint"):
        mc.load(path)
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(RuntimeError, match="truncated or corrupt"):
        mc.load(path)
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        mc.load(tmp_path / "nothing_here.safetensors")


class _DropNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3)
        )

    def forward(self, x):
        return self.body(x)


def _train(model, opt, sched, steps, data_rng):
    losses = []
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        x = mc.tensor(data_rng.standard_normal((8, 6)).astype(np.float32))
        y = mc.tensor(data_rng.integers(0, 3, 8))
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize(
    "make_opt", [lambda p: optim.Adam(p, lr=1e-2), lambda p: optim.SGD(p, lr=0.1, momentum=0.9)]
)
def test_training_state_resumes_bit_for_bit(tmp_path, make_opt):
    mc.manual_seed(5)
    model = _DropNet()
    opt = make_opt(model.parameters())
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    _train(model, opt, sched, 3, np.random.default_rng(0))
    path = tmp_path / "state.safetensors"
    extra = {"history": [1.5, 2.5], "best": (0.25, 3), 4: np.float32(0.5), "__odd": None, "arr": np.arange(3)}
    mc.save_training_state(path, model, opt, sched, epoch=3, extra=extra)
    saved_lr = list(sched.get_last_lr())
    continued = _train(model, opt, sched, 4, np.random.default_rng(1))  # dropout draws from minicnn's RNG
    final = {k: v.numpy().copy() for k, v in model.state_dict().items()}

    mc.manual_seed(999)  # a different RNG state and different initial weights
    model2 = _DropNet()
    opt2 = make_opt(model2.parameters())
    sched2 = optim.lr_scheduler.StepLR(opt2, step_size=2, gamma=0.5)
    info = mc.load_training_state(path, model2, opt2, sched2)
    assert info["epoch"] == 3
    got = info["extra"]
    assert got["history"] == [1.5, 2.5] and got["best"] == (0.25, 3) and got["__odd"] is None
    assert type(got[4]) is np.float32 and got[4] == 0.5
    np.testing.assert_array_equal(got["arr"], np.arange(3))
    assert sched2.get_last_lr() == saved_lr and opt2.param_groups[0]["lr"] == saved_lr[0]
    resumed = _train(model2, opt2, sched2, 4, np.random.default_rng(1))
    assert resumed == continued  # exactly the same floats
    for k, v in model2.state_dict().items():
        assert np.array_equal(v.numpy(), final[k]), k


def test_training_state_errors(tmp_path):
    plain = tmp_path / "plain.safetensors"
    mc.save(models.mnist_cnn(), plain)
    with pytest.raises(RuntimeError, match="holds no training state"):
        mc.load_training_state(plain, models.mnist_cnn())
    with pytest.raises(TypeError, match="without pickle"):
        mc.save_training_state(tmp_path / "x.safetensors", models.mnist_cnn(), extra={"f": object()})
    m = nn.Linear(2, 2)
    mc.save_training_state(tmp_path / "m.safetensors", m, epoch=1)
    with pytest.raises(RuntimeError, match="no optimizer state"):
        mc.load_training_state(tmp_path / "m.safetensors", m, optim.SGD(m.parameters(), lr=0.1))


# ---------------------------------------------------------------- safetensors headers that lie
def _safetensors_file(header, data: bytes, *, raw: bytes | None = None) -> bytes:
    import json
    import struct

    text = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


_A = np.arange(4, dtype="<f4").tobytes()  # 16 bytes
_B = np.arange(2, dtype="<f4").tobytes()  # 8 bytes


def _entry(shape, begin, end, dtype="F32"):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


HEADER_CASES = {
    # name: (file bytes, words the error must contain, or None where the file is valid)
    "valid": (_safetensors_file({"a": _entry([4], 0, 16), "b": _entry([2], 16, 24)}, _A + _B), None),
    "header order differs from the offsets'": (
        _safetensors_file({"b": _entry([2], 16, 24), "a": _entry([4], 0, 16)}, _A + _B), None
    ),
    "an empty tensor beside another at 0": (
        _safetensors_file({"e": _entry([0], 0, 0), "a": _entry([4], 0, 16)}, _A), None
    ),
    "blanks before the JSON": (
        _safetensors_file(None, _A, raw=b'  {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'),
        None,
    ),
    "overlapping": (
        _safetensors_file({"a": _entry([4], 0, 16), "b": _entry([2], 8, 16)}, _A + _B),
        ["'a'", "'b'", "overlap"],
    ),
    "the same bytes twice": (
        _safetensors_file({"a": _entry([4], 0, 16), "b": _entry([4], 0, 16)}, _A),
        ["'a'", "'b'", "overlap"],
    ),
    "offsets given end first": (
        _safetensors_file({"a": _entry([4], 16, 0)}, _A), ["tensor 'a'", "[16, 0]"]
    ),
    "a gap": (
        _safetensors_file({"a": _entry([4], 0, 16), "b": _entry([2], 20, 28)}, _A + b"gap!" + _B),
        ["[16, 20]", "'a'", "'b'", "no tensor"],
    ),
    "not starting at 0": (
        _safetensors_file({"a": _entry([4], 8, 24)}, _B + _A), ["[0, 8]", "'a'", "no tensor"]
    ),
    "bytes after the last tensor": (
        _safetensors_file({"a": _entry([4], 0, 16)}, _A + b"zz"),
        ["'a'", "18 bytes", "2 bytes belong to no tensor"],
    ),
    "a name given twice": (
        _safetensors_file(
            None,
            _A + _A,
            raw=b'{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, '
            b'"a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}',
        ),
        ["'a' twice"],
    ),
    "a boolean in the shape": (
        _safetensors_file({"a": _entry([True, 4], 0, 16)}, _A), ["tensor 'a'", "malformed"]
    ),
}


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_safetensors_header_checks_agree_with_the_library(tmp_path, case):
    """minicnn.load refuses exactly the files the safetensors library refuses, with one line that names
    the file and the tensors; the valid ones load to the library's arrays."""
    import safetensors.numpy

    data, words = HEADER_CASES[case]
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    if words is None:
        expected = safetensors.numpy.load(data)
        loaded = mc.load(path)
        assert set(loaded) == set(expected)
        for name, array in expected.items():
            np.testing.assert_array_equal(loaded[name].numpy(), array)
        return
    with pytest.raises(Exception):  # noqa: B017 - the library's own error type
        safetensors.numpy.load(data)
    with pytest.raises(mc.serialization.CheckpointError) as info:
        mc.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message, (word, message)
