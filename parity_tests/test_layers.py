"""Every nn layer against its torch.nn twin (``minicnn.testing.compare_with_torch``): weights copied
from torch by state-dict key, then the output, the input gradient, every parameter gradient and
every buffer (running statistics) compared."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

import minicnn as mc
from minicnn import nn
from minicnn.testing import compare_with_torch
from parity_tests.harness import DTYPES, rng_for


def layer_parity(make, x, *, device, dtype, train=True, extra=None, calls=1, rtol=None):
    """Build the pair with ``make(layers)``, copy torch's weights, run ``calls`` forward/backward passes
    through ``compare_with_torch`` (output, input gradient, every parameter gradient and buffer).

    ``extra``: further inputs (e.g. integer targets) passed without gradient. The state is copied
    only before the first call, so running statistics evolve on both sides independently.
    """
    ref = make(torch.nn)
    mine = make(nn)
    extra = list(extra or [])
    for call in range(calls):
        compare_with_torch(
            mine,
            ref,
            x,
            *extra,
            dtype=dtype,
            device=device,
            rtol=rtol,
            grad=[True] + [False] * len(extra),
            train=train,
            copy_state=call == 0,
            seed=zlib.crc32(repr(("upstream", x.shape, call)).encode()),
        )
    assert list(mine.state_dict()) == list(ref.state_dict())  # PyTorch's key names, in its order
    return mine, ref


def _images(key, shape):
    return rng_for(key, shape).standard_normal(shape)


CASES = {
    "conv_basic": (lambda L: L.Conv2d(3, 4, 3), (2, 3, 7, 6)),
    "conv_stride_pad_dil": (
        lambda L: L.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), dilation=2),
        (2, 2, 9, 8),
    ),
    "conv_groups_nobias": (lambda L: L.Conv2d(4, 6, 3, padding=1, groups=2, bias=False), (2, 4, 5, 5)),
    "conv_same": (lambda L: L.Conv2d(2, 3, 5, padding="same"), (1, 2, 6, 7)),
    "maxpool": (lambda L: L.MaxPool2d(2), (2, 3, 6, 6)),
    "maxpool_overlap": (lambda L: L.MaxPool2d(3, stride=2, padding=1), (2, 2, 7, 7)),
    "avgpool": (lambda L: L.AvgPool2d(2), (2, 3, 6, 6)),
    "avgpool_pad": (lambda L: L.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 2, 7, 7)),
    "adaptive_avgpool": (lambda L: L.AdaptiveAvgPool2d((2, 3)), (2, 3, 6, 7)),
    "global_avgpool": (lambda L: L.AdaptiveAvgPool2d(1), (2, 3, 5, 5)),
    "linear": (lambda L: L.Linear(5, 4), (3, 5)),
    "linear_3d_nobias": (lambda L: L.Linear(5, 4, bias=False), (2, 3, 5)),
    "flatten": (lambda L: L.Flatten(), (2, 3, 4, 5)),
    "flatten_mid": (lambda L: L.Flatten(1, 2), (2, 3, 4, 5)),
    "identity": (lambda L: L.Identity(), (2, 3)),
    "relu": (lambda L: L.ReLU(), (3, 7)),
    "leaky_relu": (lambda L: L.LeakyReLU(0.2), (3, 7)),
    "elu": (lambda L: L.ELU(alpha=0.7), (3, 7)),
    "gelu": (lambda L: L.GELU(), (3, 7)),
    "gelu_tanh": (lambda L: L.GELU(approximate="tanh"), (3, 7)),
    "silu": (lambda L: L.SiLU(), (3, 7)),
    "sigmoid": (lambda L: L.Sigmoid(), (3, 7)),
    "tanh": (lambda L: L.Tanh(), (3, 7)),
    "softmax": (lambda L: L.Softmax(dim=1), (3, 7)),
    "log_softmax": (lambda L: L.LogSoftmax(dim=-1), (2, 3, 7)),
    "dropout_p0": (lambda L: L.Dropout(0.0), (3, 7)),
    "small_cnn": (
        lambda L: L.Sequential(
            L.Conv2d(2, 4, 3, padding=1, bias=False),  # a bias right before BN gets a zero gradient
            L.BatchNorm2d(4),
            L.ReLU(),
            L.MaxPool2d(2),
            L.Flatten(),
            L.Linear(36, 3),
        ),
        (3, 2, 6, 6),
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_layer_matches_torch(case, dtype, device):
    make, shape = CASES[case]
    layer_parity(make, _images(case, shape), device=device, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda L: L.BatchNorm2d(3), (4, 3, 5, 5)),
        (lambda L: L.BatchNorm2d(3, momentum=None), (4, 3, 5, 5)),
        (lambda L: L.BatchNorm2d(3, momentum=0.3, affine=False), (4, 3, 5, 5)),
        (lambda L: L.BatchNorm2d(3, track_running_stats=False), (4, 3, 5, 5)),
        (lambda L: L.BatchNorm1d(4, eps=1e-3, bias=False), (6, 4)),
        (lambda L: L.BatchNorm1d(4, momentum=None), (3, 4, 5)),
    ],
    ids=[
        "bn2d",
        "bn2d_cumulative",
        "bn2d_no_affine",
        "bn2d_no_running",
        "bn1d_no_bias",
        "bn1d_3d_cumulative",
    ],
)
def test_batchnorm_train_then_eval_matches_torch(make, shape, dtype, device):
    """Three training steps (running stats and num_batches_tracked follow torch), then eval mode."""
    x = _images("bn", shape) * 2 + 0.5
    mine, ref = layer_parity(make, x, device=device, dtype=dtype, calls=3)
    if mine.track_running_stats:
        assert mine.num_batches_tracked.item() == 3 and mine.num_batches_tracked.dtype == np.int64
    # eval: uses the running statistics (or batch statistics without them)
    compare_with_torch(
        mine, ref, _images("bn-eval", shape), dtype=dtype, device=device, train=False, copy_state=False
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_eval_is_identity_and_train_statistics(dtype, device):
    x = _images("dropout", (4, 50))
    layer_parity(lambda L: L.Dropout(0.5), x, device=device, dtype=dtype, train=False)
    drop = nn.Dropout(0.25)
    mc.manual_seed(3)
    ones = mc.ones(200, 500, dtype=getattr(mc, dtype), device=device)
    out = drop(ones).numpy()
    kept = out != 0
    assert abs(1 - kept.mean() - 0.25) < 0.01  # about p of the entries are zeroed...
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)  # ...and the rest scaled by 1/(1-p)
    mc.manual_seed(3)
    np.testing.assert_array_equal(drop(ones).numpy(), out)  # reproducible with manual_seed


LOSS_CASES = {
    "ce": (lambda L: L.CrossEntropyLoss(), (5, 4), "index"),
    "ce_sum": (lambda L: L.CrossEntropyLoss(reduction="sum"), (5, 4), "index"),
    "ce_none_spatial": (lambda L: L.CrossEntropyLoss(reduction="none"), (2, 4, 3, 3), "index"),
    "ce_ignore": (lambda L: L.CrossEntropyLoss(ignore_index=1), (6, 4), "index"),
    "ce_smoothing": (lambda L: L.CrossEntropyLoss(label_smoothing=0.1), (5, 4), "index"),
    "ce_probabilities": (lambda L: L.CrossEntropyLoss(), (5, 4), "probs"),
    "nll": (lambda L: L.NLLLoss(), (5, 4), "index"),
    "nll_ignore_none": (lambda L: L.NLLLoss(ignore_index=2, reduction="none"), (6, 4), "index"),
    "mse": (lambda L: L.MSELoss(), (3, 4), "same"),
    "mse_sum": (lambda L: L.MSELoss(reduction="sum"), (3, 4), "same"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_loss_matches_torch(case, dtype, device):
    make, shape, kind = LOSS_CASES[case]
    rng = rng_for("loss", case)
    x = rng.standard_normal(shape)
    if kind == "index":
        target = rng.integers(0, shape[1], size=shape[:1] + shape[2:]).astype(np.int64)
    elif kind == "probs":
        p = rng.random(shape)
        target = (p / p.sum(1, keepdims=True)).astype(dtype)
    else:
        target = rng.standard_normal(shape).astype(dtype)
    layer_parity(make, x, device=device, dtype=dtype, extra=[target])


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_losses_match_torch(dtype, device):
    """Class weights are buffers (load_state_dict copies them) and weight the mean as torch does."""
    rng = rng_for("weighted")
    w = torch.from_numpy(rng.random(4) + 0.5)
    x = rng.standard_normal((7, 4))
    target = rng.integers(0, 4, size=7).astype(np.int64)
    target[2] = -100
    for make in (
        lambda L: L.CrossEntropyLoss(weight=w.clone() if L is torch.nn else mc.tensor(w.numpy())),
        lambda L: L.CrossEntropyLoss(
            weight=w.clone() if L is torch.nn else mc.tensor(w.numpy()), label_smoothing=0.2, reduction="sum"
        ),
        lambda L: L.NLLLoss(weight=w.clone() if L is torch.nn else mc.tensor(w.numpy())),
    ):
        layer_parity(make, x, device=device, dtype=dtype, extra=[target])
