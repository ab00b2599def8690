"""The catalogue ``python -m minicnn.check`` runs: every op, layer, loss, optimizer and scheduler of
minicnn, each with edge-case configurations and a sampler of random ones (odd sizes, strides,
padding, dilation, groups, ties), checked against PyTorch through ``minicnn.testing``.

An entry is a :class:`Check`: a name (what ``--ops`` selects), a group, fixed configurations, a
``sample(rng)`` that draws one more, and a ``run(config, ctx)`` that compares minicnn with PyTorch
on one configuration through ``ctx.compare`` / ``ctx.compare_optimizer`` -- the one place where
the runs happen (where a future "which implementation tier" option would go).
"""

from __future__ import annotations

import operator
import zlib
from dataclasses import dataclass, field

import numpy as np

import minicnn as mc
from minicnn import nn, optim
from minicnn.nn import functional as F
from minicnn.testing._optim import compare_optimizer_with_torch
from minicnn.testing._parity import compare_with_torch

SIDES = (1, 2, 3, 5, 7)


@dataclass
class Check:
    name: str
    group: str  # op, functional, nn, optim
    sample: object  # rng -> config dict; None: the fixed configurations only
    run: object  # (config, ctx) -> ParityReport or list of them
    fixed: list = field(default_factory=list)
    note: str = ""


@dataclass
class Context:
    """What a run needs: the dtype and device asked for, torch, and seeded random values."""

    dtype: str
    device: str
    torch: object
    rng: np.random.Generator
    seed: int

    def compare(self, mine, theirs, *inputs, **options):
        """compare_with_torch in this run's dtype and on its device (the single place ops are run)."""
        options.setdefault("seed", self.seed)
        return compare_with_torch(mine, theirs, *inputs, dtype=self.dtype, device=self.device, **options)

    def compare_optimizer(self, make_mine, make_theirs, params, **options):
        options.setdefault("seed", self.seed)
        return compare_optimizer_with_torch(
            make_mine, make_theirs, params, dtype=self.dtype, device=self.device, **options
        )

    # ---- values
    def normal(self, shape, scale=1.0):
        return np.asarray(self.rng.standard_normal(shape) * scale)

    def positive(self, shape):
        return np.asarray(self.rng.uniform(0.5, 2.0, shape))

    def away_from_zero(self, shape):
        return np.asarray(self.rng.choice([-1.0, 1.0], shape) * self.rng.uniform(0.5, 2.0, shape))


def config_seed(seed, name, index) -> int:
    return zlib.crc32(repr((seed, name, index)).encode())


def configurations(check: Check, count: int, seed: int) -> list:
    """The fixed configurations first, then random ones, ``count`` in all (seeded: the same every run)."""
    configs = list(check.fixed[:count])
    rng = np.random.default_rng(config_seed(seed, check.name, "configs"))
    while check.sample is not None and len(configs) < count:
        configs.append(check.sample(rng))
    return configs


def describe(config: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in config.items())


def _pick(rng, values):
    return values[int(rng.integers(len(values)))]


def _shape(rng, lo=1, hi=4, sides=SIDES):
    return tuple(int(_pick(rng, sides)) for _ in range(int(rng.integers(lo, hi + 1))))


CATALOGUE: dict[str, Check] = {}


def _register(check: Check) -> Check:
    CATALOGUE[check.name] = check
    return check


# ====================================================================== convolution
def _conv_sample(rng):
    kind = _pick(rng, ["plain", "plain", "grouped", "depthwise"])
    if kind == "plain":
        groups, cin, cout = 1, int(_pick(rng, SIDES)), int(_pick(rng, SIDES))
    elif kind == "grouped":
        groups = int(_pick(rng, [2, 3]))
        cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    else:
        groups = cin = int(_pick(rng, [1, 2, 3, 5]))
        cout = cin * int(rng.integers(1, 3))
    kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pad_kind = _pick(rng, ["int", "pair", "same", "valid"])
    stride = (1, 1) if pad_kind == "same" else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    if pad_kind == "int":
        padding = int(rng.integers(0, 3))
        pads = (padding, padding)
    elif pad_kind == "pair":
        padding = pads = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    else:
        padding, pads = pad_kind, (0, 0)
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    h = max(1, eh - 2 * pads[0]) + int(_pick(rng, [0, 1, 2, 4, 6]))
    w = max(1, ew - 2 * pads[1]) + int(_pick(rng, [0, 1, 3, 5]))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return dict(
        x=(int(_pick(rng, [1, 2, 3])), cin, h, w),
        w=(cout, cin // groups, kh, kw),
        bias=bool(rng.integers(0, 2)),
        kwargs=kwargs,
    )


def _conv_run(cfg, ctx):
    TF, kw = ctx.torch.nn.functional, cfg["kwargs"]
    inputs = [cfg["x"], cfg["w"]] + ([(cfg["w"][0],)] if cfg["bias"] else [])
    return ctx.compare(lambda *a: F.conv2d(*a, **kw), lambda *a: TF.conv2d(*a, **kw), *inputs)


_register(
    Check(
        "conv2d",
        "functional",
        _conv_sample,
        _conv_run,
        fixed=[
            dict(x=(2, 3, 9, 7), w=(4, 3, 3, 2), bias=True, kwargs=dict(stride=(2, 1), padding=(1, 0))),
            dict(x=(2, 4, 6, 6), w=(4, 1, 3, 3), bias=True, kwargs=dict(padding=1, groups=4)),  # depthwise
            dict(x=(2, 3, 6, 5), w=(5, 3, 2, 2), bias=False, kwargs=dict(padding="same", dilation=(2, 1))),
            dict(x=(2, 4, 5, 4), w=(6, 2, 1, 1), bias=True, kwargs=dict(stride=2, groups=2)),  # 1x1, grouped
            dict(x=(3, 2, 4, 4), w=(3, 2, 4, 4), bias=True, kwargs=dict(padding="valid")),  # kernel == input
        ],
    )
)


# ====================================================================== pooling
def _pool_sample(rng, dilation=True):
    kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    stride = None if rng.random() < 0.3 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1)))
    dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if dilation else (1, 1)
    eh, ew = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
    # at least `dilation` pixels per axis: no window lies entirely in the padding
    h = max(dil[0], eh - 2 * padding[0]) + int(_pick(rng, [0, 1, 2, 3, 6]))
    w = max(dil[1], ew - 2 * padding[1]) + int(_pick(rng, [0, 1, 4, 5]))
    kwargs = dict(kernel_size=(kh, kw), stride=stride, padding=padding, ceil_mode=bool(rng.integers(0, 2)))
    if dilation:
        kwargs["dilation"] = dil
    return dict(x=(int(_pick(rng, [1, 2, 3])), int(_pick(rng, [1, 2, 5])), h, w), kwargs=kwargs)


def _pool_values(cfg, ctx):
    shape, values = cfg["x"], cfg.get("values", "normal")
    if values == "relu":  # mostly all-zero windows: ties everywhere
        return np.maximum(ctx.normal(shape) - 0.8, 0.0)
    if values == "integers":
        return ctx.rng.integers(-2, 3, size=shape).astype(np.float64)
    if values == "constant":
        return np.full(shape, 1.5)
    return ctx.normal(shape)


def _max_pool_sample(rng):
    cfg = _pool_sample(rng)
    cfg["values"] = _pick(rng, ["normal", "normal", "relu", "integers"])
    return cfg


def _max_pool_run(cfg, ctx):
    TF, kw = ctx.torch.nn.functional, dict(cfg["kwargs"], return_indices=True)
    x = _pool_values(cfg, ctx)
    # ties: each window's gradient goes to its first maximum; overlapping windows may add their
    # shares in another order than PyTorch (last bit), hence the relative tolerance on gradients
    return ctx.compare(lambda a: F.max_pool2d(a, **kw), lambda a: TF.max_pool2d(a, **kw), x)


_register(
    Check(
        "max_pool2d",
        "functional",
        _max_pool_sample,
        _max_pool_run,
        fixed=[
            dict(x=(2, 3, 9, 7), values="relu", kwargs=dict(kernel_size=3, stride=2, padding=1)),
            dict(x=(2, 3, 9, 7), values="integers", kwargs=dict(kernel_size=2, ceil_mode=True)),
            dict(
                x=(2, 2, 9, 7), values="constant", kwargs=dict(kernel_size=3, stride=1, padding=1, dilation=2)
            ),
            dict(x=(2, 3, 7, 8), values="normal", kwargs=dict(kernel_size=(3, 2), stride=(1, 2))),
        ],
    )
)


def _avg_pool_sample(rng):
    cfg = _pool_sample(rng, dilation=False)
    cfg["kwargs"]["count_include_pad"] = bool(rng.integers(0, 2))
    cfg["kwargs"]["divisor_override"] = None if rng.random() < 0.7 else int(rng.integers(1, 7))
    return cfg


def _avg_pool_run(cfg, ctx):
    TF, kw = ctx.torch.nn.functional, cfg["kwargs"]
    return ctx.compare(lambda a: F.avg_pool2d(a, **kw), lambda a: TF.avg_pool2d(a, **kw), cfg["x"])


_register(
    Check(
        "avg_pool2d",
        "functional",
        _avg_pool_sample,
        _avg_pool_run,
        fixed=[
            dict(
                x=(2, 2, 7, 8),
                kwargs=dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
            ),
            dict(
                x=(2, 2, 7, 8), kwargs=dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), ceil_mode=True)
            ),
            dict(x=(2, 3, 6, 6), kwargs=dict(kernel_size=2, divisor_override=3)),
        ],
    )
)


def _adaptive_sample(rng):
    shape = (
        int(_pick(rng, [1, 2, 3])),
        int(_pick(rng, [1, 2, 3])),
        int(rng.integers(1, 12)),
        int(rng.integers(1, 12)),
    )
    size = (int(rng.integers(1, 8)), None if rng.random() < 0.2 else int(rng.integers(1, 8)))
    return dict(x=shape, output_size=size)


def _adaptive_run(cfg, ctx):
    TF, size = ctx.torch.nn.functional, cfg["output_size"]
    return ctx.compare(
        lambda a: F.adaptive_avg_pool2d(a, size), lambda a: TF.adaptive_avg_pool2d(a, size), cfg["x"]
    )


_register(
    Check(
        "adaptive_avg_pool2d",
        "functional",
        _adaptive_sample,
        _adaptive_run,
        fixed=[
            dict(x=(2, 3, 7, 11), output_size=(3, 5)),  # uneven, overlapping bins
            dict(x=(4, 6, 7, 5), output_size=1),  # global average pooling
            dict(x=(2, 3, 5, 4), output_size=(7, 6)),  # output larger than the input
        ],
    )
)


# ====================================================================== batch norm, dropout, linear
def _bn_sample(rng):
    """At least 3 values per channel: with 2, x-hat is +-1 and the input gradient of training mode is
    ~eps/var times the upstream one, all cancellation (float32 then differs at 1e-3, correctly)."""
    c = int(_pick(rng, [1, 2, 3, 5]))
    shape = _pick(
        rng,
        [
            (int(rng.integers(3, 8)), c),
            (int(rng.integers(1, 4)), c, int(rng.integers(3, 6))),
            (int(rng.integers(1, 4)), c, int(rng.integers(1, 5)), int(rng.integers(3, 5))),
        ],
    )
    training = bool(rng.integers(0, 2))
    return dict(
        x=shape,
        training=training,
        affine=bool(rng.integers(0, 2)),
        track=bool(rng.integers(0, 2)) or not training,
        momentum=float(_pick(rng, [0.1, 0.3, 1.0])),
        eps=float(_pick(rng, [1e-5, 1e-3])),
    )


def _bn_run(cfg, ctx):
    """The running statistics come back as extra outputs, so they are compared after the forward."""
    TF, shape, c = ctx.torch.nn.functional, cfg["x"], cfg["x"][1]
    options = dict(training=cfg["training"], momentum=cfg["momentum"], eps=cfg["eps"])

    def make(bn):
        def fn(x, rm, rv, w, b):
            rm, rv = (rm, rv) if cfg["track"] else (None, None)
            w, b = (w, b) if cfg["affine"] else (None, None)
            out = bn(x, rm, rv, w, b, **options)
            return (out, rm, rv) if cfg["track"] else out

        return fn

    x = ctx.normal(shape, ctx.rng.uniform(0.5, 3)) + ctx.rng.uniform(-2, 2)
    inputs = [x, ctx.normal(c), ctx.positive(c), ctx.normal(c), ctx.normal(c)]
    grad = [True, False, False, cfg["affine"], cfg["affine"]]
    return ctx.compare(make(F.batch_norm), make(TF.batch_norm), *inputs, grad=grad)


_register(
    Check(
        "batch_norm",
        "functional",
        _bn_sample,
        _bn_run,
        fixed=[
            dict(x=(4, 3, 5, 5), training=True, affine=True, track=True, momentum=0.1, eps=1e-5),
            dict(x=(4, 3, 5, 5), training=False, affine=True, track=True, momentum=0.1, eps=1e-5),
            dict(x=(1, 4, 7), training=True, affine=False, track=False, momentum=0.3, eps=1e-3),
        ],
    )
)

_DROPOUT_NOTE = "dropout: p=0, p=1 and eval mode only (random masks cannot match PyTorch's generator)"


def _dropout_sample(rng):
    return dict(
        x=_shape(rng, 2, 4),
        fn=_pick(rng, ["dropout", "dropout2d"]),
        p=float(_pick(rng, [0.0, 1.0, 0.5])),
        training=bool(rng.integers(0, 2)),
    )


def _dropout_run(cfg, ctx):
    TF, name = ctx.torch.nn.functional, cfg["fn"]
    p, training = cfg["p"], cfg["training"] if cfg["p"] in (0.0, 1.0) else False
    shape = cfg["x"] if name == "dropout" else cfg["x"] + (2,) * (4 - len(cfg["x"]))  # (N, C, H, W)
    return ctx.compare(
        lambda a: getattr(F, name)(a, p, training), lambda a: getattr(TF, name)(a, p, training), shape
    )


_register(
    Check(
        "dropout",
        "functional",
        _dropout_sample,
        _dropout_run,
        note=_DROPOUT_NOTE,
        fixed=[
            dict(x=(4, 50), fn="dropout", p=0.0, training=True),
            dict(x=(4, 50), fn="dropout", p=1.0, training=True),
            dict(x=(2, 3, 4, 4), fn="dropout2d", p=0.5, training=False),
        ],
    )
)


def _linear_sample(rng):
    fin, fout = int(_pick(rng, SIDES)), int(_pick(rng, SIDES))
    lead = _shape(rng, 0, 2)
    return dict(x=lead + (fin,), w=(fout, fin), bias=bool(rng.integers(0, 2)))


def _linear_run(cfg, ctx):
    TF = ctx.torch.nn.functional
    inputs = [cfg["x"], cfg["w"]] + ([(cfg["w"][0],)] if cfg["bias"] else [])
    return ctx.compare(F.linear, TF.linear, *inputs)


_register(
    Check(
        "linear",
        "functional",
        _linear_sample,
        _linear_run,
        fixed=[
            dict(x=(3, 5), w=(4, 5), bias=True),
            dict(x=(2, 3, 5), w=(4, 5), bias=False),
            dict(x=(5,), w=(1, 5), bias=True),
        ],
    )
)


# ====================================================================== activations
def _activation(name, mc_fn, torch_fn, **options):
    def sample(rng):
        # at least 5 values: where every value saturates (tanh of |x| > 3), the float32 gradient
        # 1 - t^2 keeps few digits, and one tensor's tolerance is set by its largest value
        shape = (int(_pick(rng, [5, 7])),) + _shape(rng, 0, 3)
        cfg = dict(x=tuple(int(v) for v in rng.permutation(shape)), scale=float(_pick(rng, [1.0, 1.0, 2.0])))
        for key, values in options.items():
            cfg[key] = _pick(rng, values)
        return cfg

    def run(cfg, ctx):
        kw = {k: v for k, v in cfg.items() if k not in ("x", "scale", "values")}
        if "dim" in kw:  # a dim the shape has
            kw["dim"] = min(kw["dim"], len(cfg["x"]) - 1)
        x = ctx.normal(cfg["x"], cfg["scale"])
        if cfg.get("values") == "zeros":  # exact zeros: PyTorch's gradient convention there
            x[ctx.rng.random(x.shape) < 0.3] = 0.0
        torch_fn_ = torch_fn(ctx.torch)
        return ctx.compare(lambda a: mc_fn(a, **kw), lambda a: torch_fn_(a, **kw), x)

    fixed = [dict(x=(2, 3, 5, 5), scale=1.0, values="zeros", **{k: v[0] for k, v in options.items()})]
    if "dim" in options:
        fixed.append(dict(x=(3, 7), scale=1e4, dim=1))  # huge logits: the max shift keeps them finite
    return _register(Check(name, "functional", sample, run, fixed=fixed))


_activation("relu", F.relu, lambda t: t.nn.functional.relu)
_activation("leaky_relu", F.leaky_relu, lambda t: t.nn.functional.leaky_relu, negative_slope=[0.01, 0.2, 1.5])
_activation("elu", F.elu, lambda t: t.nn.functional.elu, alpha=[1.0, 0.7])
_activation("gelu", F.gelu, lambda t: t.nn.functional.gelu, approximate=["none", "tanh"])
_activation("silu", F.silu, lambda t: t.nn.functional.silu)
_activation("sigmoid", F.sigmoid, lambda t: t.sigmoid)
_activation("tanh", F.tanh, lambda t: t.tanh)
_activation("softmax", F.softmax, lambda t: t.nn.functional.softmax, dim=[-1, 0, 1, 2])
_activation("log_softmax", F.log_softmax, lambda t: t.nn.functional.log_softmax, dim=[-1, 0, 1, 2])


def _conv_transpose_sample(rng):
    groups = int(_pick(rng, [1, 1, 2]))
    k, s = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    d = int(_pick(rng, [1, 1, 2]))
    return dict(
        x=(int(rng.integers(1, 3)), groups * int(rng.integers(1, 3)), *map(int, rng.integers(1, 5, 2))),
        out_channels=groups * int(rng.integers(1, 3)),
        kernel=k,
        stride=s,
        padding=int(rng.integers(0, (d * (k - 1)) // 2 + 1)),
        output_padding=int(rng.integers(0, max(s, d))),
        dilation=d,
        groups=groups,
        bias=bool(rng.integers(0, 2)),
    )


def _conv_transpose_run(cfg, ctx):
    TF = ctx.torch.nn.functional
    n, c_in = cfg["x"][:2]
    w = ctx.normal((c_in, cfg["out_channels"] // cfg["groups"], cfg["kernel"], cfg["kernel"]))
    kw = {k: cfg[k] for k in ("stride", "padding", "output_padding", "groups", "dilation")}
    extra = [ctx.normal(cfg["out_channels"])] if cfg["bias"] else []
    return ctx.compare(
        lambda x, w, *b: F.conv_transpose2d(x, w, *b, **kw),
        lambda x, w, *b: TF.conv_transpose2d(x, w, *b, **kw),
        cfg["x"],
        w,
        *extra,
    )


_register(
    Check(
        "conv_transpose2d",
        "functional",
        _conv_transpose_sample,
        _conv_transpose_run,
        fixed=[dict(x=(2, 4, 4, 4), out_channels=2, kernel=4, stride=2, padding=1, output_padding=0,
                    dilation=1, groups=1, bias=False)],  # fmt: skip
    )
)


# ====================================================================== losses
def _class_problem(cfg, ctx):
    """Scores (N, C, *spatial), integer targets with some ignored, and class weights."""
    shape, c = cfg["x"], cfg["x"][1] if len(cfg["x"]) > 1 else cfg["x"][0]
    x = ctx.normal(shape, 3.0)
    target_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    target = ctx.rng.integers(0, c, size=target_shape).astype(np.int64)
    if cfg.get("ignore") and target.ndim:
        target.reshape(-1)[:: max(2, target.size // 2)] = cfg["ignore"]
    weight = ctx.positive(c) if cfg.get("weight") else None
    return x, target, weight


def _ce_sample(rng):
    n, c = int(rng.integers(1, 7)), int(rng.integers(2, 6))
    shape = _pick(rng, [(n, c), (n, c), (n, c, int(rng.integers(1, 4)), int(rng.integers(1, 4)))])
    return dict(
        x=shape,
        target=_pick(rng, ["index", "index", "probs"]),
        weight=bool(rng.integers(0, 2)),
        ignore=_pick(rng, [None, -100, 1]),
        smoothing=float(_pick(rng, [0.0, 0.0, 0.1, 0.3])),
        reduction=_pick(rng, ["mean", "sum", "none"]),
    )


def _ce_run(cfg, ctx):
    TF = ctx.torch.nn.functional
    x, target, weight = _class_problem(cfg, ctx)
    ignore = -100 if cfg["ignore"] is None else cfg["ignore"]
    if cfg["target"] == "probs":
        p = ctx.rng.random(x.shape)
        target, ignore = p / p.sum(axis=1, keepdims=True), -100
    kw = dict(ignore_index=ignore, reduction=cfg["reduction"], label_smoothing=cfg["smoothing"])
    inputs = [x, target] + ([weight] if weight is not None else [])
    grad = [True, target.dtype.kind == "f"] + ([False] if weight is not None else [])
    return ctx.compare(
        lambda a, t, *w: F.cross_entropy(a, t, *w, **kw),
        lambda a, t, *w: TF.cross_entropy(a, t, *w, **kw),
        *inputs,
        grad=grad,
    )


_register(
    Check(
        "cross_entropy",
        "functional",
        _ce_sample,
        _ce_run,
        fixed=[
            dict(x=(6, 4), target="index", weight=True, ignore=1, smoothing=0.2, reduction="mean"),
            dict(x=(2, 4, 3, 3), target="index", weight=False, ignore=-100, smoothing=0.0, reduction="none"),
            dict(x=(5, 4), target="probs", weight=True, ignore=None, smoothing=0.1, reduction="sum"),
        ],
    )
)


def _nll_sample(rng):
    cfg = _ce_sample(rng)
    cfg.pop("target"), cfg.pop("smoothing")
    return cfg


def _nll_run(cfg, ctx):
    TF = ctx.torch.nn.functional
    x, target, weight = _class_problem(cfg, ctx)
    x = x - np.log(np.exp(x).sum(axis=1, keepdims=True))  # log-probabilities
    kw = dict(ignore_index=-100 if cfg["ignore"] is None else cfg["ignore"], reduction=cfg["reduction"])
    inputs = [x, target] + ([weight] if weight is not None else [])
    return ctx.compare(
        lambda a, t, *w: F.nll_loss(a, t, *w, **kw),
        lambda a, t, *w: TF.nll_loss(a, t, *w, **kw),
        *inputs,
        grad=[True, False] + ([False] if weight is not None else []),
    )


_register(
    Check(
        "nll_loss",
        "functional",
        _nll_sample,
        _nll_run,
        fixed=[
            dict(x=(6, 4), weight=True, ignore=2, reduction="none"),
            dict(x=(3, 5, 2, 2), weight=True, ignore=None, reduction="mean"),
        ],
    )
)


def _mse_sample(rng):
    return dict(x=_shape(rng, 0, 3), reduction=_pick(rng, ["mean", "sum", "none"]))


def _mse_run(cfg, ctx):
    TF, r = ctx.torch.nn.functional, cfg["reduction"]
    return ctx.compare(
        lambda a, b: F.mse_loss(a, b, reduction=r),
        lambda a, b: TF.mse_loss(a, b, reduction=r),
        cfg["x"],
        cfg["x"],
    )


_register(Check("mse_loss", "functional", _mse_sample, _mse_run, fixed=[dict(x=(3, 4), reduction="mean")]))


def _bce_sample(rng):
    shape = _shape(rng, 1, 3)
    return dict(
        x=shape,
        hard=bool(rng.integers(0, 2)),  # 0/1 labels or soft targets
        weight=_pick(rng, [None, "last", "full"]),
        pos_weight=bool(rng.integers(0, 2)),
        reduction=_pick(rng, ["mean", "sum", "none"]),
    )


def _bce_problem(cfg, ctx):
    """Targets in [0, 1] (0/1 or soft), and a weight broadcast from the last axis or of full shape."""
    shape = cfg["x"]
    target = (ctx.rng.random(shape) > 0.5).astype(np.float64) if cfg["hard"] else ctx.rng.random(shape)
    weight = {None: None, "last": shape[-1:], "full": shape}[cfg["weight"]]
    return target, (None if weight is None else ctx.positive(weight))


def _bce_run(cfg, ctx):
    TF, r = ctx.torch.nn.functional, cfg["reduction"]
    target, weight = _bce_problem(cfg, ctx)
    p = ctx.rng.uniform(0.02, 0.98, cfg["x"])
    extra = [] if weight is None else [weight]
    return ctx.compare(
        lambda a, t, *w: F.binary_cross_entropy(a, t, *w, reduction=r),
        lambda a, t, *w: TF.binary_cross_entropy(a, t, *w, reduction=r),
        p,
        target,
        *extra,
        grad=[True, True] + [False] * len(extra),
    )


def _bce_logits_run(cfg, ctx):
    TF, r = ctx.torch.nn.functional, cfg["reduction"]
    target, weight = _bce_problem(cfg, ctx)
    pos_weight = ctx.positive(cfg["x"][-1:]) * 2 if cfg["pos_weight"] else None
    names = [n for n, v in (("weight", weight), ("pos_weight", pos_weight)) if v is not None]
    extra = [v for v in (weight, pos_weight) if v is not None]

    def call(fn):
        return lambda a, t, *e: fn(a, t, reduction=r, **dict(zip(names, e)))

    return ctx.compare(
        call(F.binary_cross_entropy_with_logits),
        call(TF.binary_cross_entropy_with_logits),
        ctx.normal(cfg["x"], 3.0),
        target,
        *extra,
        grad=[True, True] + [False] * len(extra),
    )


_register(
    Check(
        "binary_cross_entropy",
        "functional",
        _bce_sample,
        _bce_run,
        fixed=[dict(x=(4, 3), hard=True, weight="last", pos_weight=False, reduction="mean")],
    )
)
_register(
    Check(
        "binary_cross_entropy_with_logits",
        "functional",
        _bce_sample,
        _bce_logits_run,
        fixed=[dict(x=(4, 3), hard=False, weight="full", pos_weight=True, reduction="sum")],
    )
)


# ====================================================================== basic tensor ops
def _broadcast_pair(rng):
    base = _shape(rng, 0, 4)

    def operand():
        dims = base[len(base) - int(rng.integers(0, len(base) + 1)) :]
        return tuple(1 if rng.random() < 0.3 else d for d in dims)

    return operand(), operand()


_VALUES = {"normal": Context.normal, "positive": Context.positive, "away": Context.away_from_zero}


def _binary(name, op, first, second):
    def sample(rng):
        a, b = _broadcast_pair(rng)
        scalar = _pick(rng, [None, None, None, "left", "right"])
        return dict(a=a, b=b, scalar=scalar)

    def run(cfg, ctx):
        if cfg["scalar"] is not None:  # a Python number on one side
            s = float(_VALUES[second if cfg["scalar"] == "right" else first](ctx, ()))
            x = _VALUES[first if cfg["scalar"] == "right" else second](ctx, cfg["a"])
            fn = (lambda t: op(t, s)) if cfg["scalar"] == "right" else (lambda t: op(s, t))
            return ctx.compare(fn, fn, x)
        a, b = _VALUES[first](ctx, cfg["a"]), _VALUES[second](ctx, cfg["b"])
        return ctx.compare(op, op, a, b)

    fixed = [dict(a=(3, 1, 5), b=(4, 1), scalar=None), dict(a=(), b=(2, 3), scalar=None)]
    return _register(Check(name, "op", sample, run, fixed=fixed))


_binary("add", operator.add, "normal", "normal")
_binary("sub", operator.sub, "normal", "normal")
_binary("mul", operator.mul, "normal", "normal")
_binary("div", operator.truediv, "normal", "away")
_binary("pow", operator.pow, "positive", "normal")


def _unary(name, method, values):
    def sample(rng):
        return dict(x=_shape(rng, 0, 4))

    def run(cfg, ctx):
        fn = operator.methodcaller(method)
        return ctx.compare(fn, fn, _VALUES[values](ctx, cfg["x"]))

    return _register(Check(name, "op", sample, run, fixed=[dict(x=(2, 1, 13))]))


_unary("exp", "exp", "normal")
_unary("log", "log", "positive")
_unary("sqrt", "sqrt", "positive")
_unary("abs", "abs", "away")


def _matmul_sample(rng):
    n, k, m = (int(_pick(rng, SIDES)) for _ in range(3))
    a_batch, b_batch = _broadcast_pair(rng)
    a = (k,) if rng.random() < 0.2 else a_batch[-2:] + (n, k)
    b = (k,) if rng.random() < 0.2 else b_batch[-2:] + (k, m)
    return dict(a=a, b=b)


def _matmul_run(cfg, ctx):
    return ctx.compare(operator.matmul, operator.matmul, cfg["a"], cfg["b"])


_register(
    Check(
        "matmul",
        "op",
        _matmul_sample,
        _matmul_run,
        fixed=[
            dict(a=(5,), b=(5,)),
            dict(a=(3, 1, 4, 5), b=(2, 5, 3)),
            dict(a=(5,), b=(2, 5, 3)),
        ],
    )
)


def _reduce_sample(rng):
    shape = _shape(rng, 1, 4)
    dims = [None] + list(range(-len(shape), len(shape))) + ([(0, -1)] if len(shape) > 1 else [])
    return dict(x=shape, dim=_pick(rng, dims), keepdim=bool(rng.integers(0, 2)))


def _reduction(name):
    def run(cfg, ctx):
        dim, keep = cfg["dim"], cfg["keepdim"]
        if name == "max":  # a reduction with a gradient that picks: max(), max(dim), amax, min(dim)
            kind = cfg.get("kind", "amax")
            if dim is None or kind == "max()":
                fn = operator.methodcaller("max")
            elif kind == "max(dim)" and isinstance(dim, int):
                fn = operator.methodcaller("max", dim, keep)
            elif kind == "min(dim)" and isinstance(dim, int):
                fn = operator.methodcaller("min", dim, keep)
            else:
                fn = operator.methodcaller("amax", dim, keep)
        else:
            fn = operator.methodcaller(name, dim, keep) if dim is not None else operator.methodcaller(name)
        return ctx.compare(fn, fn, cfg["x"])

    def sample(rng):
        cfg = _reduce_sample(rng)
        if name == "max":
            cfg["kind"] = _pick(rng, ["max()", "max(dim)", "min(dim)", "amax"])
        return cfg

    fixed = [dict(x=(3, 4, 5), dim=(0, 2), keepdim=True), dict(x=(3, 4, 5), dim=-1, keepdim=False)]
    if name == "max":
        fixed = [
            dict(x=(3, 5, 4), dim=1, keepdim=False, kind="max(dim)"),
            dict(x=(4, 6), dim=None, keepdim=False),
        ]
    return _register(Check(name, "op", sample, run, fixed=fixed))


_reduction("sum")
_reduction("mean")
_reduction("max")

_RESHAPES = {
    "reshape": lambda t: t.reshape(t.shape[-1], -1),
    "view": lambda t: t.view(-1),
    "flatten": lambda t: t.flatten(1) if len(t.shape) > 1 else t.flatten(),
    "unsqueeze": lambda t: t.unsqueeze(1),
    "squeeze": lambda t: t.squeeze(),
    "expand": lambda t: t.unsqueeze(0).expand(3, *t.shape),
}


def _reshape_sample(rng):
    return dict(x=_shape(rng, 1, 4), how=_pick(rng, list(_RESHAPES)))


def _reshape_run(cfg, ctx):
    fn = _RESHAPES[cfg["how"]]
    return ctx.compare(fn, fn, cfg["x"])


_register(
    Check(
        "reshape",
        "op",
        _reshape_sample,
        _reshape_run,
        fixed=[
            dict(x=(3, 4, 5), how="reshape"),
            dict(x=(2, 1, 3), how="squeeze"),
            dict(x=(4, 1), how="expand"),
        ],
    )
)


def _permute_sample(rng):
    shape = _shape(rng, 2, 4)
    return dict(x=shape, dims=tuple(int(d) for d in rng.permutation(len(shape))))


def _permute_run(cfg, ctx):
    dims = cfg["dims"]
    if len(dims) == 2:
        return ctx.compare(lambda t: t.transpose(0, 1) * 2.0, lambda t: t.transpose(0, 1) * 2.0, cfg["x"])
    return ctx.compare(lambda t: t.permute(*dims), lambda t: t.permute(*dims), cfg["x"])


_register(Check("permute", "op", _permute_sample, _permute_run, fixed=[dict(x=(3, 4, 5), dims=(2, 0, 1))]))


def _join_sample(rng):
    shape = _shape(rng, 1, 3)
    return dict(x=shape, dim=int(rng.integers(-len(shape), len(shape))))


def _cat_run(cfg, ctx):
    dim = cfg["dim"]
    other = list(cfg["x"])
    other[dim] = other[dim] + 2
    return ctx.compare(
        lambda a, b: mc.cat([a, b, a], dim),
        lambda a, b: ctx.torch.cat([a, b, a], dim),
        cfg["x"],
        tuple(other),
    )


def _stack_run(cfg, ctx):
    dim = cfg["dim"]
    return ctx.compare(
        lambda a, b: mc.stack([a, b, a], dim),
        lambda a, b: ctx.torch.stack([a, b, a], dim),
        cfg["x"],
        cfg["x"],
    )


_register(Check("cat", "op", _join_sample, _cat_run, fixed=[dict(x=(2, 3), dim=1)]))
_register(Check("stack", "op", _join_sample, _stack_run, fixed=[dict(x=(2, 3), dim=-1)]))

_INDICES = {
    "slices": lambda t: t[1:, None, ..., ::2],
    "int": lambda t: t[-1],
    "repeated rows": lambda t: t[[0, 0, 1, 0]],
    "mixed": lambda t: t[:, [1, 1, 0]],
}


def _getitem_sample(rng):
    return dict(x=(int(rng.integers(2, 5)),) + _shape(rng, 1, 3, (2, 3, 5)), index=_pick(rng, list(_INDICES)))


def _getitem_run(cfg, ctx):
    fn = _INDICES[cfg["index"]]
    return ctx.compare(fn, fn, cfg["x"])


_register(
    Check(
        "getitem",
        "op",
        _getitem_sample,
        _getitem_run,
        fixed=[
            dict(x=(3, 4, 5), index="slices"),
            dict(x=(3, 4), index="repeated rows"),
        ],
    )
)


def _where_run(cfg, ctx):
    return ctx.compare(
        lambda a, b: mc.where(a > b, a, b * b),
        lambda a, b: ctx.torch.where(a > b, a, b * b),
        cfg["a"],
        cfg["b"],
    )


def _where_sample(rng):
    a, b = _broadcast_pair(rng)
    return dict(a=a, b=b)


_register(Check("where", "op", _where_sample, _where_run, fixed=[dict(a=(3, 4), b=(4,))]))


def _clamp_sample(rng):
    lo, hi = _pick(rng, [(-0.5, 0.5), (None, 0.0), (0.0, None), (-1.0, -1.0)])
    return dict(x=_shape(rng, 1, 3), min=lo, max=hi)


def _clamp_run(cfg, ctx):
    x = ctx.rng.integers(-4, 5, cfg["x"]) / 2.0  # values on the bounds: the gradient there is 0
    lo, hi = cfg["min"], cfg["max"]
    return ctx.compare(lambda t: t.clamp(lo, hi), lambda t: t.clamp(lo, hi), x)


_register(Check("clamp", "op", _clamp_sample, _clamp_run, fixed=[dict(x=(5, 6), min=-0.5, max=1.0)]))


# ====================================================================== nn layers
def _layer(name, make, shape_of, fixed, extra=None, calls=1, note=""):
    """A layer entry: ``make(config, layers)`` builds the layer from minicnn.nn or torch.nn."""

    def run(cfg, ctx):
        mine, theirs = make(cfg, nn, ctx), make(cfg, ctx.torch.nn, ctx)
        x = ctx.normal(shape_of(cfg)) * cfg.get("scale", 1.0) + cfg.get("shift", 0.0)
        extras = extra(cfg, ctx) if extra else []
        grad = [True] + [e.dtype.kind == "f" and cfg.get("target") == "same" for e in extras]
        reports = []
        for call in range(calls):
            reports.append(
                ctx.compare(
                    mine, theirs, x, *extras, grad=grad, train=cfg.get("train", True), copy_state=call == 0
                )
            )
        if calls > 1:  # then evaluation mode, with the running statistics
            reports.append(
                ctx.compare(mine, theirs, ctx.normal(shape_of(cfg)), train=False, copy_state=False)
            )
        return reports

    return _register(Check(name, "nn", None, run, fixed=fixed, note=note))


_layer(
    "nn.Conv2d",
    lambda c, L, ctx: L.Conv2d(*c["args"], **c["kw"]),
    lambda c: c["x"],
    [
        dict(args=(3, 4, 3), kw={}, x=(2, 3, 7, 6)),
        dict(args=(2, 3, (3, 2)), kw=dict(stride=(2, 1), padding=(1, 2), dilation=2), x=(2, 2, 9, 8)),
        dict(args=(4, 6, 3), kw=dict(padding=1, groups=2, bias=False), x=(2, 4, 5, 5)),
        dict(args=(2, 3, 5), kw=dict(padding="same"), x=(1, 2, 6, 7)),
    ],
)
_layer(
    "nn.MaxPool2d",
    lambda c, L, ctx: L.MaxPool2d(*c["args"], **c["kw"]),
    lambda c: c["x"],
    [
        dict(args=(2,), kw={}, x=(2, 3, 6, 6)),
        dict(args=(3,), kw=dict(stride=2, padding=1, ceil_mode=True), x=(2, 2, 7, 8)),
    ],
)
_layer(
    "nn.AvgPool2d",
    lambda c, L, ctx: L.AvgPool2d(*c["args"], **c["kw"]),
    lambda c: c["x"],
    [
        dict(args=(2,), kw={}, x=(2, 3, 6, 6)),
        dict(args=(3, 2, 1), kw=dict(count_include_pad=False), x=(2, 2, 7, 7)),
    ],
)
_layer(
    "nn.AdaptiveAvgPool2d",
    lambda c, L, ctx: L.AdaptiveAvgPool2d(c["size"]),
    lambda c: c["x"],
    [
        dict(size=(2, 3), x=(2, 3, 6, 7)),
        dict(size=1, x=(2, 3, 5, 5)),
    ],
)
_BN_NOTE = "three training calls (running statistics compared after each), then one in eval mode"
_layer(
    "nn.BatchNorm1d",
    lambda c, L, ctx: L.BatchNorm1d(c["c"], **c["kw"]),
    lambda c: c["x"],
    [
        dict(c=4, kw=dict(eps=1e-3), x=(6, 4), scale=2.0, shift=0.5),
        dict(c=4, kw=dict(momentum=None), x=(3, 4, 5), scale=2.0, shift=0.5),
    ],
    calls=3,
    note=_BN_NOTE,
)
_layer(
    "nn.BatchNorm2d",
    lambda c, L, ctx: L.BatchNorm2d(c["c"], **c["kw"]),
    lambda c: c["x"],
    [
        dict(c=3, kw={}, x=(4, 3, 5, 5), scale=2.0, shift=0.5),
        dict(c=3, kw=dict(momentum=0.3, affine=False), x=(4, 3, 5, 5), scale=2.0, shift=0.5),
    ],
    calls=3,
    note=_BN_NOTE,
)
_layer(
    "nn.Linear",
    lambda c, L, ctx: L.Linear(*c["args"], **c["kw"]),
    lambda c: c["x"],
    [
        dict(args=(5, 4), kw={}, x=(3, 5)),
        dict(args=(5, 4), kw=dict(bias=False), x=(2, 3, 5)),
    ],
)
_layer(
    "nn.Dropout",
    lambda c, L, ctx: L.Dropout(c["p"]),
    lambda c: c["x"],
    [
        dict(p=0.0, x=(3, 7)),
        dict(p=0.5, x=(4, 50), train=False),
    ],
    note=_DROPOUT_NOTE,
)
_layer(
    "nn.Flatten",
    lambda c, L, ctx: L.Flatten(*c["args"]),
    lambda c: c["x"],
    [
        dict(args=(), x=(2, 3, 4, 5)),
        dict(args=(1, 2), x=(2, 3, 4, 5)),
    ],
)
_ACTIVATION_LAYERS = [
    ("ReLU", {}),
    ("LeakyReLU", dict(negative_slope=0.2)),
    ("ELU", dict(alpha=0.7)),
    ("GELU", dict(approximate="tanh")),
    ("SiLU", {}),
    ("Sigmoid", {}),
    ("Tanh", {}),
    ("Softmax", dict(dim=1)),
    ("LogSoftmax", dict(dim=-1)),
    ("Identity", {}),
]
_layer(
    "nn.activations",
    lambda c, L, ctx: getattr(L, c["layer"])(**c["kw"]),
    lambda c: c["x"],
    [dict(layer=name, kw=kw, x=(3, 7)) for name, kw in _ACTIVATION_LAYERS],
)


def _loss_layer(c, L, ctx):
    if c["layer"] == "MSELoss":
        return L.MSELoss(**c["kw"])
    weight = None
    if c.get("weight"):
        w = np.linspace(0.5, 2.0, c["x"][1])
        weight = ctx.torch.from_numpy(w) if L is ctx.torch.nn else mc.tensor(w)
    return getattr(L, c["layer"])(weight=weight, **c["kw"])


def _loss_targets(c, ctx):
    if c["target"] == "same":
        return [ctx.normal(c["x"])]
    shape = c["x"][:1] + c["x"][2:]
    t = ctx.rng.integers(0, c["x"][1], size=shape).astype(np.int64)
    t.reshape(-1)[::3] = c["kw"].get("ignore_index", -100)
    return [t]


_layer(
    "nn.losses",
    _loss_layer,
    lambda c: c["x"],
    [
        dict(layer="CrossEntropyLoss", kw=dict(label_smoothing=0.2), weight=True, x=(7, 4), target="index"),
        dict(layer="CrossEntropyLoss", kw=dict(reduction="none"), x=(2, 4, 3, 3), target="index"),
        dict(
            layer="NLLLoss", kw=dict(ignore_index=2, reduction="sum"), weight=True, x=(6, 4), target="index"
        ),
        dict(layer="MSELoss", kw={}, x=(3, 4), target="same"),
    ],
    extra=_loss_targets,
)


def _small_cnn(c, L, ctx):
    return L.Sequential(
        L.Conv2d(2, 4, 3, padding=1, bias=False),  # a bias right before BN gets a zero gradient
        L.BatchNorm2d(4),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Flatten(),
        L.Linear(36, 3),
    )


_layer("nn.Sequential", _small_cnn, lambda c: c["x"], [dict(x=(3, 2, 6, 6))])


# ====================================================================== optimizers and schedulers
_OPTIMIZERS = {
    "SGD": [
        dict(lr=0.1),
        dict(lr=0.05, momentum=0.9, dampening=0.3),
        dict(lr=0.05, momentum=0.9, nesterov=True),
        dict(lr=0.05, momentum=0.5, weight_decay=0.1, maximize=True),
    ],
    "Adam": [
        dict(),
        dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
        dict(lr=0.01, weight_decay=0.1, amsgrad=True),
    ],
    "AdamW": [dict(), dict(lr=0.01, weight_decay=0.3), dict(lr=0.01, amsgrad=True, maximize=True)],
    "RMSprop": [dict(), dict(lr=0.01, momentum=0.9), dict(lr=0.01, centered=True, weight_decay=0.1)],
    "Adadelta": [dict(), dict(lr=0.5, rho=0.8, weight_decay=0.1), dict(lr=1.0, eps=1e-4, maximize=True)],
    "Adagrad": [
        dict(),
        dict(lr=0.1, lr_decay=0.01, weight_decay=0.1),
        dict(lr=0.05, initial_accumulator_value=0.5),
    ],
}


def _optimizer(name):
    def run(cfg, ctx):
        kw = cfg["kwargs"]
        return ctx.compare_optimizer(
            lambda ps: getattr(optim, name)(ps, **kw),
            lambda ps: getattr(ctx.torch.optim, name)(ps, foreach=False, **kw),
            [(3, 4), (7,), (2, 3, 5)],
            steps=20,
        )

    fixed = [dict(kwargs=kw) for kw in _OPTIMIZERS[name]]
    return _register(Check(f"optim.{name}", "optim", None, run, fixed=fixed))


for _name in _OPTIMIZERS:
    _optimizer(_name)

_SCHEDULERS = {
    "StepLR": lambda S, o: S.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda S, o: S.MultiStepLR(o, milestones=[10, 20, 20], gamma=0.3),
    "CosineAnnealingLR": lambda S, o: S.CosineAnnealingLR(o, T_max=30, eta_min=1e-3),
    "LinearLR": lambda S, o: S.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=20),
    "LambdaLR": lambda S, o: S.LambdaLR(o, lambda e: 0.97**e),
    "ExponentialLR": lambda S, o: S.ExponentialLR(o, gamma=0.9),
    "SequentialLR": lambda S, o: S.SequentialLR(
        o,
        [S.LinearLR(o, start_factor=0.01, total_iters=10), S.CosineAnnealingLR(o, T_max=20)],
        milestones=[10],
    ),
    "OneCycleLR": lambda S, o: S.OneCycleLR(o, max_lr=0.5, total_steps=30, three_phase=True),
}


def _scheduler_run(cfg, ctx):
    make = _SCHEDULERS[cfg["scheduler"]]

    def groups(ps):
        return [{"params": ps[:1], "lr": 0.1}, {"params": ps[1:], "lr": 0.02}]

    return ctx.compare_optimizer(
        lambda ps: optim.SGD(groups(ps), momentum=0.9),
        lambda ps: ctx.torch.optim.SGD(groups(ps), momentum=0.9, foreach=False),
        [(2, 3), (4,)],
        steps=30,
        scheduler=(lambda o: make(optim.lr_scheduler, o), lambda o: make(ctx.torch.optim.lr_scheduler, o)),
    )


_SCHED_FIXED = [dict(scheduler=name) for name in _SCHEDULERS]
_register(Check("optim.lr_scheduler", "optim", None, _scheduler_run, fixed=_SCHED_FIXED))

GROUPS = ("functional", "op", "nn", "optim")
