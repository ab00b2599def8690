"""Whole-model training parity: the MNIST CNN (Adam) and the CIFAR CNN (SGD with momentum) built in
minicnn and in PyTorch (same builder, ``layers=torch.nn``), minicnn loading torch's initial weights,
trained 20 steps on the same random batches. Per-step losses, running statistics and final weights
must agree.

Dropout is disabled with p=0 (the two frameworks draw different random masks); the layer is still
in the model, so its code path runs. The 20 steps cycle through 4 fixed random batches, so the
models memorise them and the loss goes down.

PyTorch runs with oneDNN (mkldnn) disabled: on multi-core CPUs oneDNN may pick float32 convolution
algorithms whose error (~1e-4 relative on these losses, measured) exceeds the comparison;
PyTorch's native convolution agrees with minicnn to ~1e-7.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minicnn as mc
from minicnn import models, nn, optim
from parity_tests.harness import assert_close, rng_for

STEPS = 20
POOL = 4  # distinct batches, cycled
LOSS_RTOL = {"float64": 1e-9, "float32": 1e-4}
# Adam in float32: Adam divides each gradient by its own running RMS, so weights whose gradients
# are pure rounding noise (the conv biases before BatchNorm, see below) still move by ~lr per step,
# in a direction set by the last bits of each framework's sums. The losses then differ by ~1e-3
# relative after a few steps (measured: up to 1.4e-3 against PyTorch 2.14.1, 2e-5 against 2.15).
# A real error moves them by O(1); the float64 run checks the exact agreement (1e-9).
ADAM_FLOAT32_LOSS_RTOL = 5e-3
# Final-state tolerance. In float32 the conv biases that feed a BatchNorm have a gradient that is
# exactly zero in exact arithmetic (BN subtracts the mean), so both frameworks push rounding noise
# of ~1e-8 through the optimizer; with Adam that noise is normalised into updates of order lr.
# Adam moves each by at most ~lr per step, so those biases (and the running means they shift) are
# compared only to the bound 2 * lr * STEPS.
STATE_RTOL = {"float64": 1e-8, "float32": 1e-4}


@pytest.fixture(autouse=True)
def _torch_native_single_thread():
    """oneDNN off (see above); one thread, which is much faster for these tiny batches on a busy machine."""
    previous = torch.backends.mkldnn.enabled, torch.get_num_threads()
    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(1)
    yield
    torch.backends.mkldnn.enabled = previous[0]
    torch.set_num_threads(previous[1])


def _bias_before_bn(model):
    names = []
    layers = list(model)
    for i, layer in enumerate(layers[:-1]):
        if isinstance(layer, torch.nn.Conv2d) and isinstance(layers[i + 1], torch.nn.BatchNorm2d):
            names += [f"{i}.bias", f"{i + 1}.running_mean"]
    return names


def _train_both(build, make_opts, input_shape, num_classes, dtype, device):
    torch.manual_seed(0)
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    ref = build(layers=torch.nn).to(tdtype)
    mine = build(layers=nn).to(getattr(mc, dtype)).to(device)
    mine.load_state_dict(ref.state_dict())
    opt, topt = make_opts(mine.parameters(), ref.parameters())
    loss_fn, tloss_fn = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    rng = rng_for("model-parity", input_shape)
    pool = [
        (rng.standard_normal(input_shape).astype(dtype), rng.integers(0, num_classes, input_shape[0]))
        for _ in range(POOL)
    ]
    losses, tlosses = [], []
    for step in range(STEPS):
        x, y = pool[step % POOL]
        opt.zero_grad()
        loss = loss_fn(mine(mc.tensor(x, device=device)), mc.tensor(y, device=device))
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = tloss_fn(ref(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert loss.dtype == np.dtype(dtype)
        losses.append(loss.item())
        tlosses.append(tloss.item())
    return mine, ref, np.array(losses), np.array(tlosses)


def _compare(mine, ref, losses, tlosses, dtype, adam_lr=None):
    rtol = ADAM_FLOAT32_LOSS_RTOL if adam_lr and dtype == "float32" else LOSS_RTOL[dtype]
    first = slice(0, POOL)
    np.testing.assert_allclose(losses[first], tlosses[first], rtol=LOSS_RTOL[dtype], err_msg="first steps")
    np.testing.assert_allclose(losses, tlosses, rtol=rtol, atol=0, err_msg="per-step losses")
    assert losses[-POOL:].mean() < 0.8 * losses[:POOL].mean()  # it learned the batches
    loose = _bias_before_bn(ref) if dtype == "float32" and adam_lr else []
    sd, tsd = mine.state_dict(), ref.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        if k in loose:
            np.testing.assert_allclose(sd[k].numpy(), tsd[k].numpy(), atol=2 * adam_lr * STEPS, err_msg=k)
        elif dtype == "float32" and adam_lr:
            # The same noise (ADAM_FLOAT32_LOSS_RTOL) moves a few weights with near-zero gradients by
            # up to ~lr per step either way: bounded by 2 * lr * STEPS, and small on average.
            diff = np.abs(sd[k].numpy() - tsd[k].numpy())
            assert diff.max() <= 2 * adam_lr * STEPS, (k, diff.max())
            assert diff.mean() <= 0.1 * adam_lr, (k, diff.mean())
        else:
            assert_close(sd[k].numpy(), tsd[k].numpy(), STATE_RTOL[dtype], k)
    assert sd["1.num_batches_tracked"].item() == STEPS


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_mnist_cnn_adam_matches_torch(dtype, device):
    def opts(params, tparams):
        return optim.Adam(params, lr=1e-3), torch.optim.Adam(tparams, lr=1e-3)

    mine, ref, losses, tlosses = _train_both(models.mnist_cnn, opts, (4, 1, 28, 28), 10, dtype, device)
    _compare(mine, ref, losses, tlosses, dtype, adam_lr=1e-3)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cifar_cnn_sgd_momentum_matches_torch(dtype, device):
    def opts(params, tparams):
        return optim.SGD(params, lr=1e-3, momentum=0.9), torch.optim.SGD(tparams, lr=1e-3, momentum=0.9)

    def build(layers):
        return models.cifar_cnn(dropout=0.0, layers=layers)  # p=0: no random masks to match

    mine, ref, losses, tlosses = _train_both(build, opts, (2, 3, 32, 32), 10, dtype, device)
    _compare(mine, ref, losses, tlosses, dtype)
