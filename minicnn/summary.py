"""``minicnn.summary(model, input_shape)``: a per-layer table of output shapes, parameters,
multiply-adds and receptive fields, found by running one forward pass on zeros under ``no_grad``
with a forward hook on every leaf layer.

Multiply-adds (bias additions not counted; other layers count 0):

* Conv2d: N * OH * OW * C_out * (C_in / groups) * KH * KW
* Linear: (number of rows) * in_features * out_features

Receptive field, per spatial dimension, for a layer with kernel k, stride s, padding p, dilation d
(Dang Ha The Hien, "A guide to receptive field arithmetic"), starting from the input's
r = 1, j = 1, start = 0.5 (pixel i covers [i, i + 1), so 0.5 is the centre of the first pixel):

    r_l = r_{l-1} + (k_l - 1) * d_l * j_{l-1}             size of the region one output unit sees
    j_l = j_{l-1} * s_l                                   distance (in input pixels) between outputs
    start_l = start_{l-1} + ((k_l - 1) * d_l / 2 - p_l) * j_{l-1}   centre of the first output's region

(with dilation d a kernel spans (k - 1) * d + 1 pixels, hence d in the start formula too).

Elementwise layers (BatchNorm, activations, dropout) keep the receptive field; after a layer
that mixes all positions (Flatten, Linear) it is the whole input and is not shown. The
geometry follows the tensors from layer to layer, which is exact for chains such as
``Sequential``; for a tensor made outside a layer (e.g. a residual ``+``) the last layer's
geometry is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from minicnn.autograd import no_grad
from minicnn.creation import zeros
from minicnn.nn.modules.conv import Conv2d
from minicnn.nn.modules.linear import Linear
from minicnn.nn.modules.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from minicnn.tensor import Tensor

_ELEMENTWISE = (
    "BatchNorm1d",
    "BatchNorm2d",
    "Dropout",
    "Identity",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "GELU",
    "SiLU",
    "Sigmoid",
    "Tanh",
)


@dataclass
class LayerInfo:
    """One row of the summary. ``rf``/``jump``/``start`` are (height, width) pairs or None."""

    name: str
    type: str
    output_shape: tuple
    params: int
    mult_adds: int
    rf: tuple | None = None
    jump: tuple | None = None
    start: tuple | None = None


@dataclass
class ModelSummary:
    """What ``minicnn.summary`` returns: the rows, the totals, and the printed table as ``str()``."""

    input_shape: tuple
    layers: list = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    total_mult_adds: int = 0
    output_shape: tuple = ()

    def __str__(self):
        return _format(self)


def _geometry(module, in_hw):
    """(kernel, stride, padding, dilation) per spatial dim for a layer that slides a window, else None."""

    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    if isinstance(module, Conv2d):
        return module.kernel_size, module.stride, module._padding, module.dilation
    if isinstance(module, MaxPool2d):
        return pair(module.kernel_size), pair(module.stride), pair(module.padding), pair(module.dilation)
    if isinstance(module, AvgPool2d):
        return pair(module.kernel_size), pair(module.stride), pair(module.padding), (1, 1)
    if isinstance(module, AdaptiveAvgPool2d):
        out = pair(module.output_size)
        out = tuple(o if o is not None else i for o, i in zip(out, in_hw))
        stride = tuple(i // o for i, o in zip(in_hw, out))
        kernel = tuple(i - (o - 1) * s for i, o, s in zip(in_hw, out, stride))
        return kernel, stride, (0, 0), (1, 1)
    return None


def _mult_adds(module, x, out):
    if isinstance(module, Conv2d):
        n, _, oh, ow = out.shape
        kh, kw = module.kernel_size
        return n * oh * ow * module.out_channels * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, Linear):
        rows = math.prod(x.shape[:-1])
        return rows * module.in_features * module.out_features
    return 0


def summary(model, input_shape, device="cpu", dtype=np.float32, verbose=True) -> ModelSummary:
    """Run ``model`` once on zeros of ``input_shape`` (batch dimension included, e.g. ``(1, 1, 28, 28)``),
    print the table (``verbose=True``) and return it as a :class:`ModelSummary`.

    The pass runs in eval mode (so BatchNorm statistics and the RNG are untouched); each layer's
    training flag is restored afterwards.
    """
    input_shape = tuple(int(s) for s in input_shape)
    leaves = [(name, m) for name, m in model.named_modules() if not any(True for _ in m.children())]
    result = ModelSummary(input_shape=input_shape)
    # Receptive-field geometry of each tensor seen so far, keyed by id (the tensors are kept alive).
    geometry = {}
    keep_alive = []
    last = [None]

    def hook_for(name):
        def hook(module, args, out):
            x = args[0] if args else None
            outs = out if isinstance(out, (tuple, list)) else (out,)
            first = outs[0]
            info = LayerInfo(
                name=name or type(module).__name__,
                type=type(module).__name__,
                output_shape=tuple(first.shape) if isinstance(first, Tensor) else (),
                params=sum(p.numel() for p in module.parameters(recurse=False)),
                mult_adds=_mult_adds(module, x, first),
            )
            prev = last[0]
            if isinstance(x, Tensor):
                if id(x) not in geometry:  # made outside a layer (e.g. a residual +): assume the last layer's
                    geometry[id(x)] = last[0]
                    keep_alive.append(x)
                prev = geometry[id(x)]
            geo = None
            if prev is not None:
                window = _geometry(module, x.shape[-2:]) if isinstance(x, Tensor) and x.ndim == 4 else None
                if window is not None:
                    r, j, start = prev
                    k, s, p, d = window
                    geo = (
                        tuple(r[i] + (k[i] - 1) * d[i] * j[i] for i in range(2)),
                        tuple(j[i] * s[i] for i in range(2)),
                        tuple(start[i] + ((k[i] - 1) * d[i] / 2 - p[i]) * j[i] for i in range(2)),
                    )
                elif info.type in _ELEMENTWISE:
                    geo = prev
            if geo is not None:
                info.rf, info.jump, info.start = geo
            geometry[id(first)] = geo
            keep_alive.append(first)
            last[0] = geo
            result.layers.append(info)

        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in leaves]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with no_grad():
            x = zeros(*input_shape, dtype=dtype, device=device)
            geometry[id(x)] = ((1, 1), (1, 1), (0.5, 0.5))
            last[0] = geometry[id(x)]
            out = model(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    first = out[0] if isinstance(out, (tuple, list)) else out
    result.output_shape = tuple(first.shape)
    params = list(model.parameters())
    result.total_params = sum(p.numel() for p in params)
    result.trainable_params = sum(p.numel() for p in params if p.requires_grad)
    result.total_mult_adds = sum(layer.mult_adds for layer in result.layers)
    if verbose:
        print(result)
    return result


def _fmt_pair(v, number):
    if v is None:
        return "-"
    return number(v[0]) if v[0] == v[1] else f"{number(v[0])}x{number(v[1])}"


def _fmt_float(v):
    return f"{v:g}"


def _format(s: ModelSummary) -> str:
    header = ("Layer", "Type", "Output shape", "Params", "Mult-adds", "RF", "Jump", "Start")
    rows = [
        (
            layer.name,
            layer.type,
            str(list(layer.output_shape)),
            f"{layer.params:,}",
            f"{layer.mult_adds:,}",
            _fmt_pair(layer.rf, str),
            _fmt_pair(layer.jump, str),
            _fmt_pair(layer.start, _fmt_float),
        )
        for layer in s.layers
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    right = {3, 4, 5, 6, 7}

    def line(cells):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    rule = "=" * len(line(header))
    out = [rule, line(header), rule.replace("=", "-")]
    out += [line(r) for r in rows]
    out += [
        rule,
        f"Input shape: {list(s.input_shape)}   Output shape: {list(s.output_shape)}",
        f"Total params: {s.total_params:,}",
        f"Trainable params: {s.trainable_params:,}",
        f"Non-trainable params: {s.total_params - s.trainable_params:,}",
        f"Total mult-adds: {s.total_mult_adds:,}",
        "RF = receptive field size, Jump = its stride, Start = centre of the first one (input pixels)",
        rule,
    ]
    return "\n".join(out)
