"""The names of docs/porting.md's audit table ("torch.* names in the PyTorch examples, torchvision's
classification reference and the Learn-the-Basics tutorials") that are marked works or added: each
call runs in minicnn and in PyTorch on the same values and the results (and gradients) are compared.
Names that only choose a device or set a flag are checked for the answer a script relies on."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

import minicnn as mc
from minicnn import nn
from minicnn.nn import functional as F
from minicnn.testing import compare_with_torch

TF = torch.nn.functional


def both(values, dtype="float64", requires_grad=False):
    a = np.asarray(values, dtype=dtype)
    return mc.tensor(a, requires_grad=requires_grad), torch.tensor(a, requires_grad=requires_grad)


def same(m, t, rtol=1e-12):
    assert str(m.dtype).replace("minicnn.", "") == str(t.dtype).replace("torch.", ""), (m.dtype, t.dtype)
    assert tuple(m.shape) == tuple(t.shape)
    np.testing.assert_allclose(m.numpy(), t.detach().numpy(), rtol=rtol, atol=rtol)


RNG = np.random.default_rng(21)


# ============================================================ device choice (every source)
def test_device_probes_choose_the_cpu_as_pytorchs_do():
    if mc.cuda_available() or torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the probes answer True")
    assert mc.cuda.is_available() is torch.cuda.is_available() is False
    assert mc.backends.mps.is_available() is torch.backends.mps.is_available() is False
    assert mc.backends.mps.is_built() is False
    assert mc.xpu.is_available() is torch.xpu.is_available() is False
    assert mc.xpu.device_count() == torch.xpu.device_count() == 0
    assert mc.accelerator.is_available() is torch.accelerator.is_available() is False
    assert mc.cuda.device_count() == torch.cuda.device_count() == 0
    use_accel = mc.accelerator.is_available()
    device = mc.accelerator.current_accelerator() if use_accel else mc.device("cpu")
    assert str(device) == "cpu" and mc.ones(2).to(device).device == mc.device("cpu")


def test_flags_scripts_set_are_accepted():
    mc.backends.cudnn.benchmark = True
    mc.backends.cudnn.deterministic = True
    mc.use_deterministic_algorithms(True)
    assert mc.are_deterministic_algorithms_enabled()
    mc.use_deterministic_algorithms(False)
    assert not mc.are_deterministic_algorithms_enabled()
    mc.backends.cudnn.benchmark, mc.backends.cudnn.deterministic = False, False


# ============================================================ tensors tutorial
def test_tensors_tutorial_creation_and_attributes():
    data = [[1, 2], [3, 4]]
    m, t = mc.tensor(data), torch.tensor(data)
    same(m, t)
    same(mc.ones_like(m), torch.ones_like(t))
    assert mc.rand_like(m, dtype=mc.float).dtype == mc.float32 == mc.float
    for fn in ("ones", "zeros"):
        same(getattr(mc, fn)((2, 3)), getattr(torch, fn)((2, 3)))
    assert tuple(mc.rand((2, 3)).shape) == (2, 3) and mc.rand(3, 4).dtype == mc.float32
    n = np.array(data)
    same(mc.from_numpy(n), torch.from_numpy(n))


def test_tensors_tutorial_operations():
    m, t = both(RNG.standard_normal((4, 4)))
    same(m[0], t[0]), same(m[:, 0], t[:, 0]), same(m[..., -1], t[..., -1])
    m[:, 1] = 0
    t[:, 1] = 0
    same(m, t)
    same(mc.cat([m, m, m], dim=1), torch.cat([t, t, t], dim=1))
    same(m @ m.T, t @ t.T)
    same(m.matmul(m.T), t.matmul(t.T))
    same(m * m, t * t)
    same(m.mul(m), t.mul(t))
    assert m.sum().item() == pytest.approx(t.sum().item(), rel=1e-12)
    m.add_(5)
    t.add_(5)
    same(m, t)


def test_out_arguments_write_into_out_and_return_it():
    m, t = both(RNG.standard_normal((4, 4)))
    y_m, y_t = mc.zeros(4, 4, dtype=mc.float64), torch.zeros(4, 4, dtype=torch.float64)
    assert mc.matmul(m, m.T, out=y_m) is y_m and torch.matmul(t, t.T, out=y_t) is y_t
    same(y_m, y_t)
    z_m, z_t = mc.zeros(4, 4, dtype=mc.float64), torch.zeros(4, 4, dtype=torch.float64)
    assert mc.mul(m, m, out=z_m) is z_m
    torch.mul(t, t, out=z_t)
    same(z_m, z_t)
    for name, args in [
        ("add", (m, 2.0)),
        ("sub", (m, m)),
        ("div", (m, 3.0)),
        ("exp", (m,)),
        ("abs", (m,)),
        ("pow", (m, 2)),
        ("clamp", (m, -0.5, 0.5)),
        ("cat", ([m, m],)),
        ("stack", ([m, m],)),
    ]:
        targs = tuple(t if a is m else ([t, t] if isinstance(a, list) else a) for a in args)
        mine, theirs = mc.empty(0, dtype=mc.float64), torch.empty(0, dtype=torch.float64)
        getattr(mc, name)(*args, out=mine)
        getattr(torch, name)(*targs, out=theirs)  # an empty out is resized without a warning
        same(mine, theirs)
    # a float result into an integer out, and out with an argument that requires a gradient: errors
    with pytest.raises(
        RuntimeError, match="result type float64 can't be cast to the desired output type int64"
    ):
        mc.mul(m, m, out=mc.zeros(4, 4, dtype=mc.int64))
    with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
        mc.mul(m.requires_grad_(), m, out=z_m)
    with mc.no_grad():
        mc.mul(m, m, out=z_m)  # fine without autograd
    # an int result into a float out is cast, as PyTorch
    ints_m, ints_t = mc.zeros(2), torch.zeros(2)
    mc.add(mc.tensor([1, 2]), mc.tensor([3, 4]), out=ints_m)
    torch.add(torch.tensor([1, 2]), torch.tensor([3, 4]), out=ints_t)
    same(ints_m, ints_t)
    with pytest.warns(UserWarning, match="was resized since it had shape"):
        mc.mul(mc.ones(3), 2.0, out=mc.zeros(2))


def test_numpy_bridge_shares_memory_both_ways():
    t = mc.ones(5)
    n = t.numpy()
    t.add_(1)
    assert n[0] == 2.0
    n = np.ones(5)
    t = mc.from_numpy(n)
    np.add(n, 1, out=n)
    assert t[0].item() == 2.0


# ============================================================ transforms tutorial: scatter_
def test_one_hot_target_by_scatter_():
    for y in (0, 3, 9):
        mine = mc.zeros(10, dtype=mc.float).scatter_(0, mc.tensor(y), value=1)
        theirs = torch.zeros(10, dtype=torch.float).scatter_(0, torch.tensor(y), value=1)
        same(mine, theirs)
        mine = mc.zeros(10, dtype=mc.float).scatter_(dim=0, index=mc.tensor(y), value=1)
        same(mine, theirs)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_scatter_with_src_matches_pytorch_with_gradients(dim):
    rng = np.random.default_rng(dim + 5)
    a = rng.standard_normal((4, 5))
    # index (3, 3): distinct positions along dim (a repeated one has no defined winner, in PyTorch too)
    if dim == 0:
        idx = np.argsort(rng.random((4, 3)), axis=0)[:3]
    else:
        idx = np.argsort(rng.random((3, 5)), axis=1)[:, :3]
    src = rng.standard_normal((3, 3))  # src of index's shape: PyTorch's src gradient has that shape
    compare_with_torch(
        lambda a, s: a.scatter(dim, mc.tensor(idx), s),
        lambda a, s: a.scatter(dim, torch.tensor(idx), s),
        a,
        src,
    )
    compare_with_torch(
        lambda a: mc.scatter(a, dim, mc.tensor(idx), value=2.5),
        lambda a: torch.scatter(a, dim, torch.tensor(idx), value=2.5),
        a,
    )
    big = rng.standard_normal((4, 5))  # a larger src: its first (3, 3) block is written
    same(
        mc.tensor(a).scatter(dim, mc.tensor(idx), mc.tensor(big)),
        torch.tensor(a).scatter(dim, torch.tensor(idx), torch.tensor(big)),
    )


def test_scatter_in_place_keeps_the_gradient_of_src():
    src_m, src_t = both(RNG.standard_normal((2, 3)), requires_grad=True)
    idx = [[2, 0, 1], [0, 1, 2]]
    out_m = mc.zeros(2, 3, dtype=mc.float64).scatter_(1, mc.tensor(idx), src_m)
    out_t = torch.zeros(2, 3, dtype=torch.float64).scatter_(1, torch.tensor(idx), src_t)
    same(out_m, out_t)
    w = RNG.standard_normal((2, 3))
    (out_m * mc.tensor(w)).sum().backward()
    (out_t * torch.tensor(w)).sum().backward()
    same(src_m.grad, src_t.grad)


def test_scatter_errors_speak_to_a_learner():
    x = mc.zeros(3, 4)
    with pytest.raises(ValueError, match="index must have the same number of axes as the input"):
        x.scatter(1, mc.tensor([0, 2, 1]), 1.0)
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 1 with size 4"):
        x.scatter(1, mc.tensor([[5]]), 1.0)
    with pytest.raises(TypeError, match="index must hold integers"):
        x.scatter(1, mc.tensor([[1.0]]), 1.0)


# ============================================================ build model / autograd tutorials
def test_buildmodel_tutorial_layers():
    x = RNG.random((3, 28, 28))
    compare_with_torch(nn.Flatten(), torch.nn.Flatten(), x)
    compare_with_torch(nn.Linear(28 * 28, 20), torch.nn.Linear(28 * 28, 20), RNG.random((3, 784)))
    compare_with_torch(nn.Softmax(dim=1), torch.nn.Softmax(dim=1), RNG.standard_normal((3, 10)))
    seq_m = nn.Sequential(nn.Flatten(), nn.Linear(784, 20), nn.ReLU(), nn.Linear(20, 10))
    seq_t = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 20), torch.nn.ReLU(), torch.nn.Linear(20, 10)
    )
    compare_with_torch(seq_m, seq_t, x)
    names_m = [n for n, _ in seq_m.named_parameters()]
    assert names_m == [n for n, _ in seq_t.named_parameters()]
    assert all(
        tuple(p.size()) == tuple(q.size())
        for (_, p), (_, q) in zip(seq_m.named_parameters(), seq_t.named_parameters())
    )


def test_autograd_tutorial():
    x_m, x_t = mc.ones(5, dtype=mc.float64), torch.ones(5, dtype=torch.float64)
    y_m, y_t = mc.zeros(3, dtype=mc.float64), torch.zeros(3, dtype=torch.float64)
    w_m, w_t = both(RNG.standard_normal((5, 3)), requires_grad=True)
    b_m, b_t = both(RNG.standard_normal(3), requires_grad=True)
    loss_m = F.binary_cross_entropy_with_logits(mc.matmul(x_m, w_m) + b_m, y_m)
    loss_t = TF.binary_cross_entropy_with_logits(torch.matmul(x_t, w_t) + b_t, y_t)
    same(loss_m, loss_t)
    assert loss_m.grad_fn is not None
    loss_m.backward()
    loss_t.backward()
    same(w_m.grad, w_t.grad), same(b_m.grad, b_t.grad)
    with mc.no_grad():
        assert not (mc.matmul(x_m, w_m) + b_m).requires_grad
    assert not (mc.matmul(x_m, w_m) + b_m).detach().requires_grad
    inp_m = mc.eye(4, 5, dtype=mc.float64, requires_grad=True)
    inp_t = torch.eye(4, 5, dtype=torch.float64, requires_grad=True)
    out_m, out_t = (inp_m + 1).pow(2).t(), (inp_t + 1).pow(2).t()
    for _ in range(2):
        out_m.backward(mc.ones_like(out_m), retain_graph=True)
        out_t.backward(torch.ones_like(out_t), retain_graph=True)
        same(inp_m.grad, inp_t.grad)
    inp_m.grad.zero_()
    inp_t.grad.zero_()
    out_m.backward(mc.ones_like(out_m), retain_graph=True)
    out_t.backward(torch.ones_like(out_t), retain_graph=True)
    same(inp_m.grad, inp_t.grad)


def test_inference_mode_records_no_graph():
    w = mc.ones(3, requires_grad=True)
    with mc.inference_mode():
        assert not (w * 2).requires_grad
    with mc.inference_mode(False):
        assert (w * 2).requires_grad

    @mc.inference_mode()
    def f():
        return (w * 2).requires_grad

    @mc.inference_mode
    def g():
        return (w * 2).requires_grad

    assert f() is False and g() is False and (w * 2).requires_grad


# ============================================================ quickstart / optimization / save and load
def test_quickstart_accuracy_count_and_loss():
    logits_m, logits_t = both(RNG.standard_normal((8, 10)))
    y = RNG.integers(0, 10, 8)
    correct_m = (logits_m.argmax(1) == mc.tensor(y)).type(mc.float).sum().item()
    correct_t = (logits_t.argmax(1) == torch.tensor(y)).type(torch.float).sum().item()
    assert correct_m == correct_t
    compare_with_torch(nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), logits_m.numpy(), y)


def test_save_and_load_a_state_dict_and_a_whole_model(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    mc.save(model.state_dict(), tmp_path / "w.pth")
    again = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    again.load_state_dict(mc.load(tmp_path / "w.pth", weights_only=True))
    x = mc.randn(2, 4)
    np.testing.assert_array_equal(model(x).detach().numpy(), again(x).detach().numpy())
    # minicnn.save(model) stores the model's state_dict (no pickled classes): load it into a new model
    mc.save(model, tmp_path / "model.pth")
    state = mc.load(tmp_path / "model.pth", weights_only=False)
    assert sorted(state) == sorted(model.state_dict())


# ============================================================ mnist / vae / dcgan / forward-forward
def test_mnist_example_net_forward_and_loss():
    class Net(nn.Module):
        def __init__(self, lib):
            super().__init__()
            self.lib = lib
            self.conv1, self.conv2 = lib.nn.Conv2d(1, 4, 3, 1), lib.nn.Conv2d(4, 8, 3, 1)
            self.fc1, self.fc2 = lib.nn.Linear(8 * 5 * 5, 16), lib.nn.Linear(16, 10)

        def forward(self, x):
            f = self.lib.nn.functional
            x = f.max_pool2d(f.relu(self.conv2(f.relu(self.conv1(x)))), 2)
            x = self.fc2(f.relu(self.fc1(self.lib.flatten(x, 1))))
            return f.log_softmax(x, dim=1)

    torch_net = torch.nn.Module()
    torch_net.__class__ = type("TorchNet", (torch.nn.Module,), {"forward": Net.forward})
    torch.nn.Module.__init__(torch_net)
    torch_net.lib = torch
    torch_net.conv1, torch_net.conv2 = torch.nn.Conv2d(1, 4, 3, 1), torch.nn.Conv2d(4, 8, 3, 1)
    torch_net.fc1, torch_net.fc2 = torch.nn.Linear(200, 16), torch.nn.Linear(16, 10)
    x, y = RNG.random((3, 1, 14, 14)), RNG.integers(0, 10, 3)
    compare_with_torch(Net(mc), torch_net, x)
    out_m, out_t = both(RNG.standard_normal((3, 10)))
    same(
        F.nll_loss(F.log_softmax(out_m, 1), mc.tensor(y), reduction="sum"),
        TF.nll_loss(TF.log_softmax(out_t, 1), torch.tensor(y), reduction="sum"),
    )
    pred_m, pred_t = out_m.argmax(dim=1, keepdim=True), out_t.argmax(dim=1, keepdim=True)
    assert (
        pred_m.eq(mc.tensor(y).view_as(pred_m)).sum().item()
        == pred_t.eq(torch.tensor(y).view_as(pred_t)).sum().item()
    )


def test_smaller_pieces_scripts_use():
    logits, y = RNG.standard_normal((5, 4)), RNG.integers(0, 4, 5)
    compare_with_torch(
        nn.CrossEntropyLoss(label_smoothing=0.1), torch.nn.CrossEntropyLoss(label_smoothing=0.1), logits, y
    )
    compare_with_torch(nn.Tanh(), torch.nn.Tanh(), logits)
    compare_with_torch(lambda b: b.unsqueeze(0), lambda b: b.unsqueeze(0), RNG.standard_normal(3))
    lam_m, lam_t = both([0.2, 0.5, 0.8])
    same(
        mc.where(mc.le(lam_m, 0.49), lam_m, 0.49 * mc.ones_like(lam_m)),
        torch.where(torch.le(lam_t, 0.49), lam_t, 0.49 * torch.ones_like(lam_t)),
    )
    same(mc.gt(lam_m, 0.51), torch.gt(lam_t, 0.51))
    assert tuple(mc.randint(10, size=(1,)).shape) == tuple(torch.randint(10, size=(1,)).shape) == (1,)
    assert mc.utils.data.Subset([1, 2, 3], [0, 2])[1] == torch.utils.data.Subset([1, 2, 3], [0, 2])[1] == 3


def test_vae_example_loss():
    recon = RNG.uniform(0.01, 0.99, (4, 784))
    x = RNG.random((4, 1, 28, 28))
    mu, logvar = RNG.standard_normal((4, 20)), RNG.standard_normal((4, 20))

    def loss(lib, fn):
        def run(recon, x, mu, logvar):
            bce = fn.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
            kld = -0.5 * lib.sum(1 + logvar - mu.pow(2) - logvar.exp())
            return bce + kld

        return run

    compare_with_torch(loss(mc, F), loss(torch, TF), recon, x, mu, logvar)
    std_m = mc.exp(0.5 * mc.tensor(logvar))
    assert tuple(mc.randn_like(std_m).shape) == (4, 20)
    compare_with_torch(
        lambda a: mc.clamp(mc.sigmoid(a), min=1e-4, max=1 - 1e-4),
        lambda a: torch.clamp(torch.sigmoid(a), min=1e-4, max=1 - 1e-4),
        RNG.standard_normal(6) * 9,
    )


def test_dcgan_discriminator_step_pieces():
    d_m = nn.Sequential(
        nn.Conv2d(3, 4, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(4, 8, 4, 2, 1, bias=False),
        nn.BatchNorm2d(8),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(8, 1, 4, 1, 0, bias=False),
        nn.Sigmoid(),
    )
    d_t = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 4, 2, 1, bias=False),
        torch.nn.LeakyReLU(0.2, inplace=True),
        torch.nn.Conv2d(4, 8, 4, 2, 1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.LeakyReLU(0.2, inplace=True),
        torch.nn.Conv2d(8, 1, 4, 1, 0, bias=False),
        torch.nn.Sigmoid(),
    )
    compare_with_torch(d_m, d_t, RNG.standard_normal((2, 3, 16, 16)), train=True)
    assert tuple(d_m(mc.randn(2, 3, 16, 16, dtype=mc.float64)).view(-1).shape) == (2,)
    label_m = mc.full((2,), 1.0, dtype=mc.float64)
    label_t = torch.full((2,), 1.0, dtype=torch.float64)
    same(label_m, label_t)
    p = RNG.uniform(0.1, 0.9, 2)
    compare_with_torch(nn.BCELoss(), torch.nn.BCELoss(), p, label_m.numpy(), grad=[True, False])

    def weights_init(m):
        if "Conv" in type(m).__name__:
            nn.init.normal_(m.weight.data, 0.0, 0.02)
        elif "BatchNorm" in type(m).__name__:
            nn.init.normal_(m.weight.data, 1.0, 0.02)
            nn.init.constant_(m.bias.data, 0)

    d_m.apply(weights_init)
    assert (
        abs(float(d_m[0].weight.std().item()) - 0.02) < 0.01 and float(d_m[3].bias.abs().sum().item()) == 0.0
    )


def test_dcgan_generator():
    def generator(lib):
        n = lib.nn
        return n.Sequential(
            n.ConvTranspose2d(8, 6, 4, 1, 0, bias=False), n.BatchNorm2d(6), n.ReLU(True),
            n.ConvTranspose2d(6, 4, 4, 2, 1, bias=False), n.BatchNorm2d(4), n.ReLU(True),
            n.ConvTranspose2d(4, 3, 4, 2, 1, bias=False), n.Tanh(),
        )  # fmt: skip

    z = RNG.standard_normal((2, 8, 1, 1))
    report = compare_with_torch(generator(mc), generator(torch), z, train=True)
    assert report.mine_outputs[0].shape == (2, 3, 16, 16)


def test_forward_forward_pieces():
    x_m, x_t = both(RNG.standard_normal((6, 5)))
    compare_with_torch(lambda a: mc.log1p(mc.exp(a)), lambda a: torch.log1p(torch.exp(a)), x_m.numpy())
    compare_with_torch(lambda a: a.log1p(), lambda a: a.log1p(), RNG.uniform(-0.5, 3.0, 7))
    same(
        mc.log1p(mc.tensor([1e-17], dtype=mc.float64)),
        torch.log1p(torch.tensor([1e-17], dtype=torch.float64)),
    )
    w_m, w_t = both(RNG.standard_normal((3, 5)))
    same(mc.mm(x_m, w_m.T), torch.mm(x_t, w_t.T))
    same(x_m.pow(2).mean(1), x_t.pow(2).mean(1))
    compare_with_torch(
        lambda x: x / (x.norm(2, 1, keepdim=True) + 1e-4),
        lambda x: x / (x.norm(2, 1, keepdim=True) + 1e-4),
        x_m.numpy(),
    )
    b_m, b_t = both(RNG.standard_normal(3))
    same(mc.mm(x_m, w_m.T) + b_m.unsqueeze(0), torch.mm(x_t, w_t.T) + b_t.unsqueeze(0))
    same(x_m.max(), x_t.max())
    y = RNG.integers(0, 5, 6)
    same((x_m.argmax(1) == mc.tensor(y)).float().mean(), (x_t.argmax(1) == torch.tensor(y)).float().mean())
    x_c = x_m.clone()
    x_c[:, :3] *= 0.0
    x_c[range(6), mc.tensor(y)] = x_m.max()
    x_tc = x_t.clone()
    x_tc[:, :3] *= 0.0
    x_tc[range(6), torch.tensor(y)] = x_t.max()
    same(x_c, x_tc)


# ============================================================ torchvision classification reference
def test_reference_accuracy_helper():
    out_m, out_t = both(RNG.standard_normal((8, 10)))
    target = RNG.integers(0, 10, 8)

    def accuracy(lib, output, target, topk=(1, 5)):
        with lib.no_grad():
            _, pred = output.topk(max(topk), 1, True, True)
            pred = pred.t()
            correct = pred.eq(target[None])
            return [correct[:k].flatten().sum(dtype=lib.float32) * (100.0 / target.size(0)) for k in topk]

    for a, b in zip(accuracy(mc, out_m, mc.tensor(target)), accuracy(torch, out_t, torch.tensor(target))):
        same(a, b, rtol=1e-6)


def test_reference_one_hot_mixup_pieces():
    target = RNG.integers(0, 5, 6)
    same(
        F.one_hot(mc.tensor(target), num_classes=5).to(dtype=mc.float32),
        TF.one_hot(torch.tensor(target), num_classes=5).to(dtype=torch.float32),
    )
    same(F.one_hot(mc.tensor(target)), TF.one_hot(torch.tensor(target)))
    same(F.one_hot(mc.tensor([[1, 0]]), 3), TF.one_hot(torch.tensor([[1, 0]]), 3))
    with pytest.raises(ValueError, match="class values must be smaller than num_classes=3"):
        F.one_hot(mc.tensor([3]), 3)
    b_m, b_t = both(RNG.standard_normal((2, 3, 4, 4)), dtype="float32")
    lam = 0.3
    same(
        b_m.clone().mul_(lam).add_(b_m.clone().mul_(1 - lam)),
        b_t.clone().mul_(lam).add_(b_t.clone().mul_(1 - lam)),
        rtol=1e-6,
    )
    assert b_m.is_floating_point() and b_m.ndim == 4
    compare_with_torch(lambda b: b.roll(1, 0), lambda b: b.roll(1, 0), b_m.numpy())
    lam_m, lam_t = both([0.2, 0.5, 0.8])
    same(
        mc.max(mc.le(lam_m, 0.49), mc.gt(lam_m, 0.51)),
        torch.max(torch.le(lam_t, 0.49), torch.gt(lam_t, 0.51)),
    )
    assert int(mc.clamp(mc.tensor([3]) - 5, min=0)) == int(torch.clamp(torch.tensor([3]) - 5, min=0)) == 0


def test_reference_optimizers_and_schedulers():
    w0 = RNG.standard_normal((3, 2))

    def run(lib, make_opt, make_sched):
        w = lib.nn.Parameter(lib.tensor(w0.copy()))
        opt = make_opt(lib, [w])
        sched = make_sched(lib, opt)
        lrs = []
        for _ in range(5):
            opt.zero_grad()
            (w * w).sum().backward()
            lib.nn.utils.clip_grad_norm_([w], 1.0)
            opt.step()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        return w.detach().numpy(), lrs

    cases = [
        (
            lambda lib, p: lib.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True),
            lambda lib, o: lib.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.1),
        ),
        (
            lambda lib, p: lib.optim.RMSprop(
                p, lr=0.01, momentum=0.9, weight_decay=1e-4, eps=0.0316, alpha=0.9
            ),
            lambda lib, o: lib.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4),
        ),
        (
            lambda lib, p: lib.optim.AdamW(p, lr=0.01, weight_decay=0.05),
            lambda lib, o: lib.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
        ),
        (
            lambda lib, p: lib.optim.Adadelta(p, lr=1.0),
            lambda lib, o: lib.optim.lr_scheduler.SequentialLR(
                o,
                [
                    lib.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=2),
                    lib.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.7),
                ],
                milestones=[2],
            ),
        ),
        (
            lambda lib, p: lib.optim.SGD(p, lr=0.1, momentum=0.9),
            lambda lib, o: lib.optim.lr_scheduler.SequentialLR(
                o,
                [
                    lib.optim.lr_scheduler.ConstantLR(o, factor=0.01, total_iters=2),
                    lib.optim.lr_scheduler.CosineAnnealingLR(o, T_max=3),
                ],
                milestones=[2],
            ),
        ),
        (
            lambda lib, p: lib.optim.Adam(p, lr=0.01, betas=(0.5, 0.999)),
            lambda lib, o: lib.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.7),
        ),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's scheduler deprecation notes
        for make_opt, make_sched in cases:
            w_m, lrs_m = run(mc, make_opt, make_sched)
            w_t, lrs_t = run(torch, make_opt, make_sched)
            np.testing.assert_allclose(w_m, w_t, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(lrs_m, lrs_t, rtol=1e-12)


@pytest.mark.parametrize("kind", ["swa", "ema", "ema_multi", "torchvision_ema"])
def test_averaged_model_matches_pytorchs(kind):
    """torch.optim.swa_utils.AveragedModel, as torchvision's ExponentialMovingAverage uses it: the
    averaged weights and buffers after a few steps, and a restart with n_averaged.fill_(0)."""

    def build(lib):
        n = lib.nn
        return n.Sequential(n.Conv2d(1, 2, 3), n.BatchNorm2d(2), n.Flatten(), n.Linear(2 * 4 * 4, 3))

    def averaged(lib, model):
        su = lib.optim.swa_utils
        if kind == "swa":
            return su.AveragedModel(model)
        if kind == "ema":
            return su.AveragedModel(model, avg_fn=su.get_ema_avg_fn(0.9), use_buffers=True)
        if kind == "ema_multi":
            return su.AveragedModel(model, multi_avg_fn=su.get_ema_multi_avg_fn(0.9), use_buffers=True)
        return su.AveragedModel(model, "cpu", lambda a, p, n: 0.8 * a + 0.2 * p, use_buffers=True)

    m_t = build(torch).double()
    m_m = build(mc).double()
    m_m.load_state_dict({k: mc.tensor(v.detach().numpy()) for k, v in m_t.state_dict().items()})
    a_t, a_m = averaged(torch, m_t), averaged(mc, m_m)
    rng = np.random.default_rng(3)
    for step in range(4):
        x = rng.standard_normal((4, 1, 6, 6))
        for lib, model, avg in ((torch, m_t, a_t), (mc, m_m, a_m)):
            with lib.no_grad():
                for p in model.parameters():
                    p.add_(0.1 * step)
            model(lib.tensor(x))  # training mode: the BatchNorm statistics move
            avg.update_parameters(model)
            if step == 1 and kind == "torchvision_ema":
                avg.n_averaged.fill_(0)  # train.py's warm-up restart
    st, sm = a_t.state_dict(), a_m.state_dict()
    assert sorted(st) == sorted(sm)
    for k in st:
        np.testing.assert_allclose(sm[k].numpy(), st[k].numpy(), rtol=1e-12, atol=1e-14, err_msg=k)
    same(a_m(mc.tensor(x)), a_t(torch.tensor(x)))


def test_reference_samplers_and_loader_arguments():
    data = mc.utils.data.TensorDataset(mc.arange(10.0), mc.arange(10))
    loader = mc.utils.data.DataLoader(
        data,
        batch_size=4,
        sampler=mc.utils.data.SequentialSampler(data),
        num_workers=0,
        pin_memory=True,
        collate_fn=None,
        drop_last=False,
        persistent_workers=False,
    )
    batches = [y.tolist() for _, y in loader]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] and len(loader) == 3
    order = list(mc.utils.data.RandomSampler(data, generator=mc.Generator().manual_seed(0)))
    assert sorted(order) == list(range(10))
    batch = mc.utils.data.default_collate([(mc.ones(2), 1), (mc.zeros(2), 0)])
    theirs = torch.utils.data.default_collate([(torch.ones(2), 1), (torch.zeros(2), 0)])
    same(batch[0], theirs[0]), same(batch[1], theirs[1])


def test_randperm_with_a_generator():
    """RASampler's torch.randperm(n, generator=g).tolist(): a permutation, the same for the same seed."""
    first = mc.randperm(50, generator=mc.Generator().manual_seed(7)).tolist()
    again = mc.randperm(50, generator=mc.Generator().manual_seed(7)).tolist()
    assert first == again and sorted(first) == list(range(50)) and first != list(range(50))
    assert str(mc.randperm(4).dtype).replace("minicnn.", "") == str(torch.randperm(4).dtype).replace(
        "torch.", ""
    )
    assert mc.randperm(0).shape == torch.randperm(0).shape
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        mc.randperm(-1)


def test_median_of_smoothed_values_is_absent_but_mean_works():
    d_m, d_t = (
        mc.tensor([1.0, 4.0, 2.0], dtype=mc.float32),
        torch.tensor([1.0, 4.0, 2.0], dtype=torch.float32),
    )
    assert d_m.mean().item() == d_t.mean().item()
    assert not hasattr(d_m, "median")  # docs/porting.md: deliberately not added (not a CNN op)


def test_the_audit_table_lists_this_files_additions():
    text = open(os.path.join(os.path.dirname(__file__), "..", "docs", "porting.md"), encoding="utf-8").read()
    for name in (
        "torch.accelerator.is_available",
        "torch.backends.mps.is_available",
        "F.binary_cross_entropy",
        "nn.BCEWithLogitsLoss",
        "Tensor.scatter_",
        "torch.inference_mode",
        "torch.log1p",
        "F.one_hot",
        "out=",
    ):
        assert name in text, name


# ============================================================ the current MNIST example, end to end
def test_current_mnist_example_runs_and_its_test_numbers_match_pytorch():
    """pytorch/examples mnist/main.py's structure with minicnn as torch (synthetic 28x28 data): device
    from torch.accelerator, Adadelta, StepLR, the train and test loops. The test loop's summed loss and
    correct count are then recomputed by PyTorch on the trained weights."""
    torch_ = mc

    class Net(torch_.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch_.nn.Conv2d(1, 32, 3, 1)
            self.conv2 = torch_.nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = torch_.nn.Dropout(0.25)
            self.dropout2 = torch_.nn.Dropout(0.5)
            self.fc1 = torch_.nn.Linear(9216, 128)
            self.fc2 = torch_.nn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.conv2(F.relu(self.conv1(x))))
            x = self.dropout1(F.max_pool2d(x, 2))
            x = self.dropout2(F.relu(self.fc1(torch_.flatten(x, 1))))
            return F.log_softmax(self.fc2(x), dim=1)

    use_accel = torch_.accelerator.is_available()
    torch_.manual_seed(1)
    device = torch_.accelerator.current_accelerator() if use_accel else torch_.device("cpu")
    rng = np.random.default_rng(1)
    images = rng.random((24, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, 24)
    dataset = torch_.utils.data.TensorDataset(torch_.tensor(images), torch_.tensor(labels))
    train_loader = torch_.utils.data.DataLoader(dataset, batch_size=8, shuffle=True)
    test_loader = torch_.utils.data.DataLoader(dataset, batch_size=12)
    model = Net().to(device)
    optimizer = torch_.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch_.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    for _epoch in range(2):
        model.train()
        for data, target in train_loader:
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
        scheduler.step()
    model.eval()
    test_loss, correct = 0.0, 0
    with torch_.no_grad():
        for data, target in test_loader:
            output = model(data.to(device))
            test_loss += F.nll_loss(output, target.to(device), reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.49)

    ref = torch.nn.Module()
    for name in ("conv1", "conv2", "fc1", "fc2"):
        mine = getattr(model, name)
        layer = (
            torch.nn.Conv2d(*mine.weight.shape[1::-1], 3)
            if "conv" in name
            else torch.nn.Linear(mine.weight.shape[1], mine.weight.shape[0])
        )
        layer.weight.data = torch.tensor(mine.weight.numpy())
        layer.bias.data = torch.tensor(mine.bias.numpy())
        setattr(ref, name, layer)
    with torch.no_grad():
        x = torch.tensor(images)
        x = TF.max_pool2d(TF.relu(ref.conv2(TF.relu(ref.conv1(x)))), 2)
        out = TF.log_softmax(ref.fc2(TF.relu(ref.fc1(torch.flatten(x, 1)))), dim=1)
        ref_loss = TF.nll_loss(out, torch.tensor(labels), reduction="sum").item()
        ref_correct = out.argmax(dim=1).eq(torch.tensor(labels)).sum().item()
    assert test_loss == pytest.approx(ref_loss, rel=1e-4) and correct == ref_correct


def test_utils_data_submodule_paths():
    """torchvision's reference imports DistributedSampler and default_collate by their submodule paths."""
    import torch.utils.data.dataloader as torch_dataloader
    import torch.utils.data.distributed as torch_distributed

    from minicnn.utils.data import dataloader, distributed

    assert distributed.DistributedSampler is mc.utils.data.DistributedSampler
    assert set(dataloader.__all__) <= set(dir(torch_dataloader))
    assert "DistributedSampler" in dir(torch_distributed)
    batch = dataloader.default_collate([(np.float64(1.0), 2), (np.float64(3.0), 4)])
    ref = torch_dataloader.default_collate([(np.float64(1.0), 2), (np.float64(3.0), 4)])
    np.testing.assert_array_equal(batch[0].numpy(), ref[0].numpy())
    assert batch[0].dtype == mc.float64 and batch[1].dtype == mc.int64 and ref[1].dtype == torch.int64
