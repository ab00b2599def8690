"""minicnn.summary: parameter counts, multiply-adds and receptive fields, each checked against an
independent computation (PyTorch output shapes, and the receptive field measured as the support of
an input gradient)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minicnn as mc
from minicnn import models


def _measured_receptive_fields(spatial_layers, input_hw):
    """(r, jump, start) after each layer, measured instead of computed by the formula.

    The layers run in PyTorch with all-ones conv weights, no bias and average pooling in place of
    max pooling (same window geometry), so an output unit's gradient w.r.t. the input is nonzero
    exactly on its receptive field. r = extent of that support; the centre of the field of output
    row i is (first + last) / 2 + 0.5 in pixel coordinates; jump = centre(i + 1) - centre(i);
    start = centre(i) - i * jump.
    """
    results = []
    for depth in range(1, len(spatial_layers) + 1):
        net = torch.nn.Sequential(*spatial_layers[:depth]).double()
        centres = []
        for step in (0, 1):
            x = torch.zeros((1, 1, *input_hw), dtype=torch.float64, requires_grad=True)
            out = net(x)
            i = out.shape[2] // 2 + step  # an interior unit, far from the borders
            out[0, 0, i, i].backward()
            rows = np.nonzero(x.grad[0, 0].abs().sum(1).numpy())[0]
            centres.append((i, rows[0], rows[-1]))
        (i0, a0, b0), (i1, a1, b1) = centres
        c0, c1 = (a0 + b0) / 2 + 0.5, (a1 + b1) / 2 + 0.5
        jump = c1 - c0
        results.append((b0 - a0 + 1, jump, c0 - i0 * jump))
    return results


def _ones_conv(c_in, c_out, k, **kw):
    conv = torch.nn.Conv2d(c_in, c_out, k, bias=False, **kw)
    torch.nn.init.ones_(conv.weight)
    return conv


def test_mnist_cnn_summary(capsys):
    model = models.mnist_cnn()
    model[1].running_mean.data[...] = 0.5
    s = mc.summary(model, (2, 1, 28, 28))
    printed = capsys.readouterr().out
    assert "Total params: 50,378" in printed and "Trainable params: 50,378" in printed
    assert s.total_params == 50_378 == sum(p.numel() for p in models.mnist_cnn(layers=torch.nn).parameters())
    assert model.training and (model[1].running_mean.numpy() == 0.5).all()  # untouched by the probe
    assert model[1].num_batches_tracked.item() == 0

    # output shapes, parameter counts and multiply-adds from the PyTorch twin, layer by layer
    ref = models.mnist_cnn(layers=torch.nn)
    x = torch.zeros(2, 1, 28, 28)
    assert [layer.name for layer in s.layers] == [str(i) for i in range(10)]
    for layer, tlayer in zip(s.layers, ref):
        y = tlayer(x)
        assert layer.type == type(tlayer).__name__
        assert layer.output_shape == tuple(y.shape)
        assert layer.params == sum(p.numel() for p in tlayer.parameters())
        if isinstance(tlayer, torch.nn.Conv2d):  # each output value costs one weight-slice dot product
            expected = y.numel() * tlayer.weight[0].numel()
        elif isinstance(tlayer, torch.nn.Linear):
            expected = x.shape[0] * tlayer.weight.numel()
        else:
            expected = 0
        assert layer.mult_adds == expected, layer.name
        x = y
    assert s.total_mult_adds == 2 * (28 * 28 * 32 * 9 + 14 * 14 * 64 * 32 * 9 + 3136 * 10)

    # receptive fields: measured with torch (BN and ReLU are elementwise, so they keep the field)
    measured = _measured_receptive_fields(
        [
            _ones_conv(1, 1, 3, padding=1),
            torch.nn.AvgPool2d(2),
            _ones_conv(1, 1, 3, padding=1),
            torch.nn.AvgPool2d(2),
        ],
        (28, 28),
    )
    spatial = [s.layers[i] for i in (0, 3, 4, 7)]
    for layer, (r, j, start) in zip(spatial, measured):
        assert layer.rf == (r, r) and layer.jump == (j, j) and layer.start == (start, start), layer.name
    assert spatial[-1].rf == (10, 10) and spatial[-1].jump == (4, 4)
    for i in (1, 2):  # BatchNorm, ReLU
        assert s.layers[i].rf == s.layers[0].rf
    assert s.layers[8].rf is None and s.layers[9].rf is None  # Flatten, Linear see everything
    text = str(s)
    assert "Mult-adds" in text and "RF" in text and "Total mult-adds: 7,739,648" in text


@pytest.mark.parametrize(
    "spatial, torch_layers",
    [
        (
            [
                mc.nn.Conv2d(1, 1, 5, stride=2, padding=1),
                mc.nn.MaxPool2d(3, 2, 1),
                mc.nn.Conv2d(1, 1, 3, dilation=2),
            ],
            [
                _ones_conv(1, 1, 5, stride=2, padding=1),
                torch.nn.AvgPool2d(3, 2, 1),
                _ones_conv(1, 1, 3, dilation=2),
            ],
        ),
        (
            [mc.nn.Conv2d(1, 1, 3), mc.nn.AvgPool2d(2), mc.nn.Conv2d(1, 1, 3, stride=3, padding=2)],
            [_ones_conv(1, 1, 3), torch.nn.AvgPool2d(2), _ones_conv(1, 1, 3, stride=3, padding=2)],
        ),
    ],
)
def test_receptive_field_formula_matches_measurement(spatial, torch_layers):
    s = mc.summary(mc.nn.Sequential(*spatial), (1, 1, 64, 64), verbose=False)
    measured = _measured_receptive_fields(torch_layers, (64, 64))
    got = [(layer.rf[0], layer.jump[0], layer.start[0]) for layer in s.layers]
    assert got == measured


def test_summary_of_models_with_functional_ops():
    s = mc.summary(models.cifar_cnn(), (1, 3, 32, 32), verbose=False)
    assert s.total_params == 620_810 and s.output_shape == (1, 10)
    r = models.resnet(20)
    s = mc.summary(r, (1, 3, 32, 32), verbose=False)
    assert s.total_params == sum(p.numel() for p in r.parameters()) == 272_474
    by_name = {layer.name: layer for layer in s.layers}
    # 3x3 convs along the main path: the stem, then 6 per stage; each adds 2 * (jump before it), and the
    # first conv of stages 2 and 3 has stride 2 (so it still adds 2 * the previous jump)
    expected_rf = 3 + 6 * 2 * 1 + (2 * 1 + 5 * 2 * 2) + (2 * 2 + 5 * 2 * 4)
    assert by_name["layer3.2.bn2"].jump == (4, 4)
    assert by_name["layer3.2.bn2"].rf == (expected_rf, expected_rf)
    assert by_name["fc"].mult_adds == 64 * 10
