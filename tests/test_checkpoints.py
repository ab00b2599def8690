"""Nested checkpoints (torch.save-style, no pickle), PyTorch's own .pt files read safely, durable writes."""

from __future__ import annotations

import io
import os
import pickle
import stat
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import minicnn as mc
from minicnn import models, nn, optim
from minicnn.serialization import CheckpointError, UnsafeCheckpointError


def trained(model, opt, steps=2, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = mc.tensor(rng.standard_normal((4, 1, 28, 28)).astype(np.float32))
        y = mc.tensor(rng.integers(0, 10, 4))
        opt.zero_grad()
        nn.CrossEntropyLoss()(model(x), y).backward()
        opt.step()
    return model, opt


def assert_same(ours, ref, path="root"):
    """``ours`` (minicnn.load) equals ``ref`` (torch.load), value by value and type by type."""
    if isinstance(ref, torch.Tensor):
        assert isinstance(ours, mc.Tensor), (path, type(ours))
        r = ref.float() if ref.dtype == torch.bfloat16 else ref
        assert ours.numpy().dtype == r.numpy().dtype and ours.shape == tuple(r.shape), path
        np.testing.assert_array_equal(ours.numpy(), r.numpy(), err_msg=path)
    elif isinstance(ref, dict):
        assert isinstance(ours, dict) and list(ours) == list(ref), path
        for k in ref:
            assert_same(ours[k], ref[k], f"{path}.{k}")
    elif isinstance(ref, (list, tuple)):
        assert type(ours) is type(ref) and len(ours) == len(ref), (path, type(ours))
        for i, (a, b) in enumerate(zip(ours, ref)):
            assert_same(a, b, f"{path}.{i}")
    else:
        assert ours == ref and type(ours) is type(ref), (path, ours, ref)


# ============================================================================ nested minicnn checkpoints
def test_nested_checkpoint_round_trip_as_torch_save(tmp_path):
    mc.manual_seed(0)
    model = models.mnist_cnn()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    trained(model, opt)
    w = mc.tensor([1.0, 2.0])
    ckpt = {
        "net": model.state_dict(),
        "optimizer": opt.state_dict(),
        "acc": 0.9875,
        "epoch": 3,
        "name": "mnist",
        "flags": [True, None, (1, "a")],
        "history": np.arange(3.0),
        "best": np.float32(0.5),
        "shared": [w, w],
        7: b"\x00raw",
        "dev": mc.device("cpu"),
    }
    path = tmp_path / "ckpt.pth"  # the extension does not matter
    mc.save(ckpt, path)
    got = mc.load(path, map_location="cpu")
    assert list(got) == list(ckpt)
    assert got["acc"] == 0.9875 and got["epoch"] == 3 and got["name"] == "mnist" and got[7] == b"\x00raw"
    assert got["flags"] == [True, None, (1, "a")] and got["dev"] == mc.device("cpu")
    assert type(got["best"]) is np.float32 and isinstance(got["history"], np.ndarray)
    assert got["shared"][0] is got["shared"][1]  # one tensor stored once, as torch.save keeps sharing
    for k, v in model.state_dict().items():
        assert isinstance(got["net"][k], mc.Tensor) and np.array_equal(got["net"][k].numpy(), v.numpy()), k
    # both load back into fresh objects and training continues identically
    model2 = models.mnist_cnn()
    opt2 = optim.Adam(model2.parameters(), lr=1e-3)
    model2.load_state_dict(got["net"])
    opt2.load_state_dict(got["optimizer"])
    trained(model, opt, steps=1, seed=9)
    trained(model2, opt2, steps=1, seed=9)
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    # every tensor is a plain safetensors entry, readable by PyTorch's safetensors
    entries = safetensors.torch.load_file(path)
    np.testing.assert_array_equal(entries["net.0.weight"].numpy(), got["net"]["0.weight"].numpy())
    assert entries["optimizer.state.0.exp_avg"].shape == got["net"]["0.weight"].shape


def test_flat_state_dict_file_is_plain_safetensors_as_before(tmp_path):
    sd = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(7, dtype=np.int64)}
    mc.save({k: mc.tensor(v) for k, v in sd.items()}, tmp_path / "ours.safetensors")
    safetensors.numpy.save_file(sd, tmp_path / "ref.safetensors")
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()
    got = mc.load(tmp_path / "ours.safetensors")
    assert isinstance(got, OrderedDict) and all(isinstance(v, mc.Tensor) for v in got.values())
    buf = io.BytesIO()  # file objects work too
    mc.save(got, buf)
    assert buf.getvalue() == (tmp_path / "ref.safetensors").read_bytes()
    np.testing.assert_array_equal(mc.load(io.BytesIO(buf.getvalue()))["w"].numpy(), sd["w"])


def test_save_refuses_what_it_cannot_store_without_pickle(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store a function at 'hook' without pickle"):
        mc.save({"hook": lambda: 0}, tmp_path / "x")
    with pytest.raises(TypeError, match=r"nn.Module at 'model'.*state_dict\(\)"):
        mc.save({"model": nn.Linear(2, 2)}, tmp_path / "x")
    loop = []
    loop.append(loop)
    with pytest.raises(TypeError, match="contains itself"):
        mc.save({"a": loop}, tmp_path / "x")
    assert not list(tmp_path.iterdir())  # nothing written, no .tmp left


# ============================================================================ PyTorch files
class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def torch_checkpoint():
    torch.manual_seed(0)
    net = TorchNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(
            net(torch.randn(4, 1, 28, 28)), torch.tensor([1, 2, 3, 4])
        ).backward()
        opt.step()
    return net, {
        "net": net.state_dict(),
        "optimizer": opt.state_dict(),
        "acc": 91.5,
        "epoch": 7,
        "args": {"lr": 1e-3, "arch": "TorchNet", "milestones": [3, 6]},
        "half": torch.arange(4, dtype=torch.float16),
        "bf16": torch.tensor([1.5, -2.25, 3.0e38, 1e-3], dtype=torch.bfloat16),
        "view": torch.arange(12.0).reshape(3, 4)[:, 1::2],  # non-contiguous, offset into its storage
        "size": torch.Size([2, 3]),
        "device": torch.device("cpu"),
        "dtype": torch.float64,
        "ints": torch.tensor([1, -2], dtype=torch.int32),
        "mask": torch.tensor([True, False]),
        "bytes": b"ab",
        "param": torch.nn.Parameter(torch.ones(2)),
    }


@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_save_checkpoints_load_value_by_value(tmp_path, zip_format):
    net, ckpt = torch_checkpoint()
    path = tmp_path / "checkpoint.pt"
    torch.save(ckpt, path, _use_new_zipfile_serialization=zip_format)
    ours = mc.load(path, map_location="cpu")
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert set(ours) == set(ref)
    for k in ("net", "optimizer", "acc", "epoch", "args", "half", "bf16", "view", "ints", "mask", "bytes"):
        assert_same(ours[k], ref[k], k)
    assert ours["bf16"].dtype == mc.float32  # upcast exactly
    assert (
        ours["size"] == mc.Size([2, 3]) and ours["device"] == mc.device("cpu") and ours["dtype"] == mc.float64
    )
    assert ours["param"].requires_grad and isinstance(ours["net"], OrderedDict)
    assert ours["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert ours["optimizer"]["state"][0]["step"].shape == ()  # a 0-d float32 tensor, as torch


def test_torch_state_dict_loads_into_the_same_minicnn_model(tmp_path):
    ref = models.mnist_cnn(layers=torch.nn)
    torch.nn.init.normal_(ref[0].weight)
    ref.eval()
    torch.save(ref.state_dict(), tmp_path / "weights.pth")
    model = models.mnist_cnn()
    model.load_state_dict(mc.load(tmp_path / "weights.pth"))
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    with mc.no_grad(), torch.no_grad():
        np.testing.assert_allclose(model(mc.tensor(x)).numpy(), ref(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_bfloat16_safetensors_from_pytorch_is_upcast_float8_refused(tmp_path):
    t = torch.tensor([[0.1, -7.5], [65504.0, 1e-20]], dtype=torch.bfloat16)
    safetensors.torch.save_file({"w": t, "b": torch.ones(2)}, tmp_path / "bf16.safetensors")
    got = mc.load(tmp_path / "bf16.safetensors")
    assert got["w"].dtype == mc.float32
    np.testing.assert_array_equal(got["w"].numpy(), t.float().numpy())
    f8 = torch.ones(2).to(torch.float8_e4m3fn)
    safetensors.torch.save_file({"w": f8}, tmp_path / "f8.safetensors")
    with pytest.raises(CheckpointError, match=r"tensor 'w' has dtype F8_E4M3, which NumPy .* cannot hold"):
        mc.load(tmp_path / "f8.safetensors")
    torch.save({"w": f8}, tmp_path / "f8.pt")
    with pytest.raises(CheckpointError, match=r"dtype torch.float8_e4m3fn, which NumPy .* cannot hold"):
        mc.load(tmp_path / "f8.pt")


# ============================================================================ malicious files
MARKER_CMD = "touch {}"


def evil_pickle(marker, protocol=2):
    """A pickle whose loading would run ``touch marker`` (os.system via __reduce__)."""

    class Evil:
        def __reduce__(self):
            return os.system, (MARKER_CMD.format(marker),)

    return pickle.dumps({"weight": [1.0, 2.0], "payload": Evil()}, protocol=protocol)


def as_torch_zip(pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def test_malicious_files_never_run_their_payload(tmp_path):
    marker = tmp_path / "pwned"
    hand_written = (
        b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(f"touch {marker}")) + f"touch {marker}".encode()
    )
    hand_written += b"\x85R."  # GLOBAL os.system, a string, TUPLE1, REDUCE: os.system("touch ...")
    files = {
        "handwritten.pt": as_torch_zip(hand_written),  # zip format, as torch.save
        "reduce.pt": as_torch_zip(evil_pickle(marker)),
        "reduce_p4.pt": as_torch_zip(evil_pickle(marker, protocol=4)),
        "legacy.pt": hand_written,  # a bare pickle: the legacy torch.save format
        "eval.pt": as_torch_zip(b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1q\x00\x85R."),
        # BUILD on a class object would set attributes on a shared class (here OrderedDict itself)
        "build.pt": as_torch_zip(b"\x80\x02ccollections\nOrderedDict\n}X\x01\x00\x00\x00aK\x01sb."),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnsafeCheckpointError, match=r"minicnn.load: .*refuse") as info:
            mc.load(tmp_path / name)
        assert "\n" not in str(info.value), name
        assert not marker.exists(), name
    with pytest.raises(UnsafeCheckpointError, match=r"needs the Python object (posix|os)\.system"):
        mc.load(tmp_path / "reduce.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"builtins\.eval"):
        mc.load(tmp_path / "eval.pt")
    # a whole model pickled by torch.save(model) needs its classes: refused, naming the first
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"torch\.nn\.modules\.linear\.Linear.*state_dict\(\)"):
        mc.load(tmp_path / "model.pt")
    assert not marker.exists()


# ============================================================================ errors and formats
def test_unreadable_files_give_one_line_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk.pt' is not a checkpoint minicnn can read"):
        mc.load(tmp_path / "junk.pt")
    np.savez(tmp_path / "arrays.npz", a=np.zeros(2))
    with pytest.raises(CheckpointError, match=r"zip archive but not a torch.save file.*numpy.load"):
        mc.load(tmp_path / "arrays.npz")
    torch.save({"w": torch.ones(1000)}, tmp_path / "cut.pt")
    data = (tmp_path / "cut.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.pt' looks like a PyTorch file but cannot be read"):
        mc.load(tmp_path / "cut.pt")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        mc.load(tmp_path)
    # the format comes from the bytes, not the name
    torch.save({"w": torch.ones(2)}, tmp_path / "torch.safetensors")
    mc.save({"w": mc.ones(2)}, tmp_path / "mine.pt")
    assert (
        mc.load(tmp_path / "torch.safetensors")["w"].tolist() == mc.load(tmp_path / "mine.pt")["w"].tolist()
    )


def test_damaged_json_metadata_names_the_file(tmp_path):
    good = tmp_path / "state.safetensors"
    model = nn.Linear(2, 2)
    mc.save_training_state(good, model, epoch=1)
    arrays = safetensors.numpy.load_file(good)
    safetensors.numpy.save_file(
        arrays, tmp_path / "bad.safetensors", metadata={"minicnn.training_state": '{"epoch": 1,'}
    )
    with pytest.raises(
        CheckpointError, match=r"load_training_state: .*bad.safetensors.*training state .* is damaged"
    ):
        mc.load_training_state(tmp_path / "bad.safetensors", model)
    safetensors.numpy.save_file(arrays, tmp_path / "bad2.safetensors", metadata={"minicnn.object": "{oops"})
    with pytest.raises(CheckpointError, match=r"minicnn.load: .*bad2.safetensors.*is damaged"):
        mc.load(tmp_path / "bad2.safetensors")


def test_map_location_forms(tmp_path):
    mc.save({"a": {"w": mc.ones(2)}, "n": 1}, tmp_path / "c")
    torch.save({"w": torch.ones(2)}, tmp_path / "t.pt")
    for where in ("cpu", mc.device("cpu"), {"cpu": "cpu"}, None):
        assert mc.load(tmp_path / "c", map_location=where)["a"]["w"].device == mc.device("cpu")
    seen = []
    got = mc.load(tmp_path / "t.pt", map_location=lambda storage, loc: seen.append(loc) or storage)
    assert seen == ["cpu"] and got["w"].tolist() == [1.0, 1.0]
    assert mc.load(tmp_path / "t.pt", device="cpu")["w"].device == mc.device("cpu")


# ============================================================================ durability
def test_save_is_fsynced_then_renamed_and_leaves_no_tmp(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        return real_fsync(fd)

    def replace(a, b):
        events.append("rename")
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    mc.save({"acc": 1.0, "w": mc.ones(3)}, tmp_path / "ckpt")
    assert events == ["fsync file", "fsync dir", "rename", "fsync dir"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]

    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        mc.save(nn.Linear(2, 2), tmp_path / "folder")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mc.save(nn.Linear(2, 2), tmp_path / "nowhere" / "m.safetensors")

    def broken(a, b):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        mc.save(nn.Linear(2, 2), tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "folder"]  # old file intact, no .tmp


def test_a_pytorch_optimizer_state_resumes_exactly(tmp_path):
    """torch.save of an Adam state (step as a 0-d tensor, buffers as tensors) loads into minicnn's
    Adam, and the next step equals PyTorch's."""
    import torch

    from minicnn import optim

    w0 = np.random.default_rng(0).standard_normal((3, 4))
    tw = torch.tensor(w0, requires_grad=True)
    topt = torch.optim.Adam([tw], lr=0.1, foreach=False)
    tw.grad = torch.ones(3, 4, dtype=torch.float64)
    topt.step()
    torch.save({"opt": topt.state_dict(), "w": tw.detach()}, tmp_path / "ckpt.pt")
    checkpoint = mc.load(tmp_path / "ckpt.pt")
    w = mc.tensor(checkpoint["w"].numpy(), requires_grad=True)
    opt = optim.Adam([w], lr=0.1)
    opt.load_state_dict(checkpoint["opt"])
    assert opt.state[w]["step"] == 1 and isinstance(opt.state[w]["step"], int)
    g = np.arange(12.0).reshape(3, 4)
    w.grad = mc.tensor(g)
    opt.step()
    tw.grad = torch.tensor(g)
    topt.step()
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-15, atol=0)
