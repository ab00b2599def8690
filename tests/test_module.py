"""nn.Module mechanics, containers, default initialisation and layer input checks, against PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import minicnn as mc
from minicnn import models, nn
from minicnn.nn import init


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.bn1 = nn.BatchNorm1d(8)
        self.fc = nn.Linear(4 * 6 * 6, 8)
        self.heads = nn.ModuleList([nn.Linear(8, 3), nn.Linear(8, 2, bias=False)])
        self.register_buffer("scale", mc.ones(3))
        self.register_buffer("cache", mc.zeros(2), persistent=False)

    def forward(self, x):
        h = self.bn1(self.fc(self.features(x).flatten(1)))
        return self.heads[0](h) * self.scale


def _torch_net_init(self):
    torch.nn.Module.__init__(self)
    L = torch.nn
    self.features = L.Sequential(L.Conv2d(1, 4, 3), L.BatchNorm2d(4), L.ReLU())
    self.bn1 = L.BatchNorm1d(8)
    self.fc = L.Linear(4 * 6 * 6, 8)
    self.heads = L.ModuleList([L.Linear(8, 3), L.Linear(8, 2, bias=False)])
    self.register_buffer("scale", torch.ones(3))
    self.register_buffer("cache", torch.zeros(2), persistent=False)


# The PyTorch twin of Net, with the same class name so that reprs can be compared.
TorchNet = type("Net", (torch.nn.Module,), {"__init__": _torch_net_init})


# ---------------------------------------------------------------------------- registration
def test_state_dict_keys_match_torch():
    for mine, ref in [
        (Net(), TorchNet()),
        (models.mnist_cnn(), models.mnist_cnn(layers=torch.nn)),
        (models.cifar_cnn(), models.cifar_cnn(layers=torch.nn)),
        (nn.BatchNorm2d(3, affine=False), torch.nn.BatchNorm2d(3, affine=False)),
        (nn.BatchNorm2d(3, track_running_stats=False), torch.nn.BatchNorm2d(3, track_running_stats=False)),
        (nn.BatchNorm1d(3, bias=False), torch.nn.BatchNorm1d(3, bias=False)),
        (nn.CrossEntropyLoss(weight=mc.ones(3)), torch.nn.CrossEntropyLoss(weight=torch.ones(3))),
    ]:
        sd, tsd = mine.state_dict(), ref.state_dict()
        assert list(sd) == list(tsd)
        for k in sd:
            assert sd[k].shape == tuple(tsd[k].shape), k
            assert str(sd[k].dtype) == str(tsd[k].dtype).replace("torch.", "minicnn."), k
        names = [n for n, _ in mine.named_parameters()]
        assert names == [n for n, _ in ref.named_parameters()]
        assert [n for n, _ in mine.named_buffers()] == [n for n, _ in ref.named_buffers()]
        assert [n for n, _ in mine.named_modules()] == [n for n, _ in ref.named_modules()]
        assert [n for n, _ in mine.named_children()] == [n for n, _ in ref.named_children()]
    assert Net().state_dict()["features.1.num_batches_tracked"].dtype == np.int64


def test_registration_rules():
    m = Net()
    assert isinstance(m.fc.weight, nn.Parameter) and m.fc.weight.requires_grad
    assert "fc" in m._modules and "scale" in m._buffers and "cache" not in m.state_dict()
    m.extra = mc.ones(2)  # a plain tensor attribute is not registered
    assert "extra" not in m.state_dict()
    m.fc.bias = None  # a parameter may be removed by assigning None
    assert "fc.bias" not in m.state_dict()
    with pytest.raises(TypeError, match="parameter 'weight'"):
        m.fc.weight = mc.ones(8, 144)
    with pytest.raises(TypeError, match="buffer 'scale'"):
        m.scale = np.ones(3)
    with pytest.raises(KeyError, match="attribute 'fc' already exists"):
        m.register_buffer("fc", mc.ones(1))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = m.nope
    del m.heads
    assert not any(k.startswith("heads") for k in m.state_dict())

    class Forgot(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(mc.ones(2))

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Forgot()


def test_shared_parameter_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    tlin = torch.nn.Linear(3, 3)
    assert list(seq.state_dict()) == list(torch.nn.Sequential(tlin, torch.nn.ReLU(), tlin).state_dict())


def test_train_eval_propagate_and_apply_order():
    m = Net()
    assert all(x.training for x in m.modules())
    assert m.eval() is m and not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    tseen = []
    TorchNet().apply(lambda mod: tseen.append(type(mod).__name__))
    assert seen == tseen


def test_zero_grad_both_modes():
    m = nn.Linear(3, 2)
    m(mc.randn(4, 3)).sum().backward()
    m.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_to_dtype_in_place_keeps_identity_and_int_buffers():
    m = models.mnist_cnn()
    params = list(m.parameters())
    assert m.double() is m
    assert all(p is q for p, q in zip(params, m.parameters()))
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m[1].running_mean.dtype == np.float64 and m[1].num_batches_tracked.dtype == np.int64
    m.to(mc.float32)
    assert all(p.dtype == np.float32 for p in m.parameters())
    assert m.to("cpu", mc.float64).cpu() is m and m[0].weight.dtype == np.float64
    with pytest.raises(TypeError, match="floating point"):
        m.to(mc.int64)


def test_forward_hooks_and_call():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    calls = []
    h = m[0].register_forward_hook(lambda mod, args, out: calls.append((args[0].shape, out.shape)))
    m(mc.randn(2, 3))
    h.remove()
    m(mc.randn(2, 3))
    assert calls == [((2, 3), (2, 4))]
    m[1].register_forward_hook(lambda mod, args, out: out * 0)
    assert not m(mc.randn(2, 3)).numpy().any()


def test_repr_matches_torch():
    pairs = [
        (Net(), TorchNet()),
        (models.cifar_cnn(), models.cifar_cnn(layers=torch.nn)),
        (
            nn.Conv2d(3, 8, (3, 5), stride=2, padding=1, dilation=2, bias=False),
            torch.nn.Conv2d(3, 8, (3, 5), stride=2, padding=1, dilation=2, bias=False),
        ),
        (nn.Conv2d(4, 8, 3, padding="same", groups=2), torch.nn.Conv2d(4, 8, 3, padding="same", groups=2)),
        (nn.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)),
        (nn.AvgPool2d(2), torch.nn.AvgPool2d(2)),
        (nn.AdaptiveAvgPool2d((2, 3)), torch.nn.AdaptiveAvgPool2d((2, 3))),
        (
            nn.BatchNorm1d(5, momentum=None, affine=False),
            torch.nn.BatchNorm1d(5, momentum=None, affine=False),
        ),
        (nn.Dropout(0.2), torch.nn.Dropout(0.2)),
        (nn.Identity(), torch.nn.Identity()),
        (nn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2)),
        (nn.ELU(), torch.nn.ELU()),
        (nn.GELU("tanh"), torch.nn.GELU("tanh")),
        (nn.SiLU(), torch.nn.SiLU()),
        (nn.Sigmoid(), torch.nn.Sigmoid()),
        (nn.Tanh(), torch.nn.Tanh()),
        (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
        (nn.LogSoftmax(dim=-1), torch.nn.LogSoftmax(dim=-1)),
        (nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()),
        (nn.MSELoss(), torch.nn.MSELoss()),
        (nn.NLLLoss(), torch.nn.NLLLoss()),
    ]
    for mine, ref in pairs:
        assert repr(mine) == repr(ref)


# ---------------------------------------------------------------------------- containers
def test_sequential_indexing_slicing_append():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and seq[0] is layers[0] and seq[-1] is layers[2]
    assert list(seq) == layers
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential) and list(tail) == layers[1:]
    assert list(tail.state_dict()) == ["2.weight", "2.bias"]  # keys kept, as in PyTorch
    seq.append(nn.Tanh())
    assert len(seq) == 4 and isinstance(seq[3], nn.Tanh)
    del seq[1]
    assert [type(m).__name__ for m in seq] == ["Linear", "Linear", "Tanh"]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    with pytest.raises(IndexError, match="out of range"):
        seq[5]
    ml = nn.ModuleList([nn.Linear(1, 1)])
    ml.append(nn.Linear(1, 2)).extend([nn.Linear(2, 2)])
    ml.insert(0, nn.ReLU())
    assert len(ml) == 4 and isinstance(ml[0], nn.ReLU) and isinstance(ml[1:], nn.ModuleList)
    assert list(ml.state_dict())[0] == "1.weight"


# ---------------------------------------------------------------------------- load_state_dict
def test_load_state_dict_from_torch_numpy_and_minicnn():
    ref = models.mnist_cnn(layers=torch.nn).double()
    m = models.mnist_cnn()
    weight = m[0].weight
    result = m.load_state_dict(ref.state_dict())
    assert (
        result.missing_keys == []
        and result.unexpected_keys == []
        and repr(result) == "<All keys matched successfully>"
    )
    assert m[0].weight is weight and weight.dtype == np.float32  # identity and dtype kept
    np.testing.assert_array_equal(weight.numpy(), ref[0].weight.detach().numpy().astype(np.float32))
    m2 = models.mnist_cnn()
    m2.load_state_dict({k: v.numpy() for k, v in m.state_dict().items()})
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


def test_state_dict_shares_memory():
    m = nn.Linear(2, 2)
    sd = m.state_dict()
    assert sd["weight"] is not m.weight and not sd["weight"].requires_grad
    m.weight.data[...] = 7.0
    assert (sd["weight"].numpy() == 7.0).all()  # a view of the model, like torch
    snapshot = {k: v.clone() for k, v in m.state_dict().items()}
    m.weight.data[...] = 1.0
    assert (snapshot["weight"].numpy() == 7.0).all()


def test_load_state_dict_reports_all_problems_at_once():
    m = models.mnist_cnn()
    before = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    sd = {k: v.numpy() for k, v in models.mnist_cnn().state_dict().items()}
    del sd["1.running_var"]
    sd["9.weight"] = np.zeros((5, 3136), np.float32)
    sd["extra.weight"] = np.zeros(1, np.float32)
    with pytest.raises(RuntimeError) as e:
        m.load_state_dict(sd)
    msg = str(e.value)
    assert 'Missing key(s) in state_dict: "1.running_var"' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in msg
    assert "size mismatch for 9.weight: copying a param with shape (5, 3136)" in msg
    assert "current model is (10, 3136)" in msg
    for k, v in m.state_dict().items():  # nothing was copied
        np.testing.assert_array_equal(v.numpy(), before[k])

    with pytest.raises(RuntimeError, match="size mismatch for 9.weight"):
        m.load_state_dict(sd, strict=False)  # shape mismatches raise even when not strict
    sd["9.weight"] = np.zeros((10, 3136), np.float32)
    result = m.load_state_dict(sd, strict=False)
    assert result == (["1.running_var"], ["extra.weight"])
    assert result.missing_keys == ["1.running_var"] and result.unexpected_keys == ["extra.weight"]
    assert not m[9].weight.numpy().any()

    # the same message shape as torch
    ref = models.mnist_cnn(layers=torch.nn)
    with pytest.raises(RuntimeError) as te:
        ref.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    assert 'Missing key(s) in state_dict: "1.running_var"' in str(te.value)


# ---------------------------------------------------------------------------- init
def test_calculate_gain_and_fans_match_torch():
    for nl, param in [
        ("linear", None),
        ("conv2d", None),
        ("sigmoid", None),
        ("tanh", None),
        ("relu", None),
        ("leaky_relu", None),
        ("leaky_relu", 0.2),
        ("leaky_relu", math.sqrt(5)),
        ("selu", None),
    ]:
        assert init.calculate_gain(nl, param) == torch.nn.init.calculate_gain(nl, param)
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("softplus")
    for shape in [(4, 3), (8, 3, 5, 5), (6, 2, 3)]:
        fans = init._calculate_fan_in_and_fan_out(mc.zeros(*shape))
        assert fans == torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(mc.zeros(3))


@pytest.mark.parametrize(
    "make, fan_in",
    [
        (lambda: nn.Conv2d(16, 64, 5), 16 * 25),
        (lambda: nn.Conv2d(8, 32, 3, groups=4), 2 * 9),
        (lambda: nn.Linear(300, 200), 300),
    ],
)
def test_default_init_bounds_and_statistics(make, fan_in):
    mc.manual_seed(123)
    layer = make()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)): gain*sqrt(3/fan_in) = 1/sqrt(fan_in)
    w, b = layer.weight.numpy(), layer.bias.numpy()
    assert w.dtype == np.float32 and b.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # U(-b, b): mean 0, variance b^2 / 3; with n samples the standard error of the mean is b / sqrt(3n)
    n = w.size
    assert abs(w.mean()) < 5 * bound / math.sqrt(3 * n)
    assert abs(w.var() / (bound**2 / 3) - 1) < 0.05
    assert np.abs(w).max() > 0.95 * bound  # the whole range is used
    # reproducible with manual_seed, different without
    mc.manual_seed(123)
    np.testing.assert_array_equal(make().weight.numpy(), w)
    assert not np.array_equal(make().weight.numpy(), w)


def test_batchnorm_default_init():
    bn = nn.BatchNorm2d(5)
    assert (bn.weight.numpy() == 1).all() and (bn.bias.numpy() == 0).all()
    assert (bn.running_mean.numpy() == 0).all() and (bn.running_var.numpy() == 1).all()
    assert bn.num_batches_tracked.shape == () and bn.num_batches_tracked.item() == 0
    assert bn.num_batches_tracked.dtype == np.int64


def test_init_functions_distributions():
    mc.manual_seed(0)
    w = mc.empty(256, 128, 3, 3)
    fan_in, fan_out = 128 * 9, 256 * 9
    std = math.sqrt(2.0) / math.sqrt(fan_in)
    assert init.kaiming_normal_(w, nonlinearity="relu") is w
    assert abs(w.numpy().std() / std - 1) < 0.01 and abs(w.numpy().mean()) < 0.01 * std
    init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu")
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(fan_out)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.99 * bound
    init.xavier_uniform_(w, gain=2.0)
    bound = 2.0 * math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.99 * bound
    init.xavier_normal_(w)
    assert abs(w.numpy().std() / math.sqrt(2.0 / (fan_in + fan_out)) - 1) < 0.01
    init.normal_(w, 3.0, 0.5)
    assert abs(w.numpy().mean() - 3.0) < 0.01 and abs(w.numpy().std() - 0.5) < 0.01
    init.uniform_(w, -2.0, 1.0)
    assert w.numpy().min() >= -2.0 and w.numpy().max() <= 1.0 and w.dtype == np.float32
    init.constant_(w, 0.25)
    assert (w.numpy() == 0.25).all()
    init.zeros_(w)
    assert not w.numpy().any()
    init.ones_(w)
    assert (w.numpy() == 1).all()
    d = init.normal_(mc.empty(10, dtype=mc.float64))
    assert d.dtype == np.float64
    with pytest.raises(ValueError, match="fan_avg"):
        init.kaiming_uniform_(w, mode="fan_avg")


# ---------------------------------------------------------------------------- input checks
@pytest.mark.parametrize(
    "layer, x, expected",
    [
        (
            nn.Conv2d(1, 32, 3),
            mc.zeros(64, 3, 28, 28),
            r"Conv2d\(1, 32, kernel_size=\(3, 3\).*\): expected input "
            r"of shape \(N, 1, H, W\), got \(64, 3, 28, 28\)",
        ),
        (nn.Conv2d(1, 32, 3), mc.zeros(1, 28, 28), r"\(N, 1, H, W\), got \(1, 28, 28\).*unsqueeze\(0\)"),
        (
            nn.Linear(3136, 10),
            mc.zeros(8, 64, 7, 7),
            r"Linear\(in_features=3136.*\(N, 3136\).*got \(8, 64, 7, 7\)"
            r".*Flatten",
        ),
        (nn.BatchNorm2d(32), mc.zeros(8, 16, 4, 4), r"BatchNorm2d\(32.*\(N, 32, H, W\), got \(8, 16, 4, 4\)"),
        (nn.BatchNorm1d(10), mc.zeros(8, 10, 2, 2), r"BatchNorm1d\(10.*\(N, 10\) or \(N, 10, L\), got"),
        (nn.BatchNorm1d(10), mc.zeros(1, 10), r"more than 1 value per channel"),
        (nn.MaxPool2d(2), mc.zeros(8, 28), r"MaxPool2d\(kernel_size=2.*\(N, C, H, W\), got \(8, 28\)"),
        (nn.AdaptiveAvgPool2d(1), mc.zeros(8, 28), r"AdaptiveAvgPool2d\(output_size=1\).*got \(8, 28\)"),
    ],
)
def test_layer_input_errors_name_layer_layout_and_shape(layer, x, expected):
    with pytest.raises(ValueError, match=expected):
        layer(x)


def test_other_argument_errors():
    with pytest.raises(TypeError, match="expected a minicnn Tensor, got ndarray"):
        nn.ReLU()(np.zeros(3))
    with pytest.raises(ValueError, match="padding_mode='reflect' is not supported"):
        nn.Conv2d(1, 1, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="same shape"):
        nn.MSELoss()(mc.zeros(4, 1), mc.zeros(4))
    with pytest.raises(ValueError, match=r"class-index target of shape \(4,\), got \(4, 1\)"):
        nn.CrossEntropyLoss()(mc.zeros(4, 3), mc.zeros(4, 1, dtype=mc.int64))
    with pytest.raises(ValueError, match="reduction"):
        nn.NLLLoss(reduction="avg")
