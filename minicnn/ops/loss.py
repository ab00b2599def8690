"""Loss functions, the textbook: ``cross_entropy`` (fused log-softmax + NLL, op ``CrossEntropy``),
``nll_loss`` (op ``NLLLoss``), ``mse_loss`` (op ``MSELoss``), ``binary_cross_entropy`` (op
``BinaryCrossEntropy``) and ``binary_cross_entropy_with_logits`` (op ``BinaryCrossEntropyWithLogits``),
with PyTorch's arguments and weighting rules. The binary losses are elementwise (any shape, target of
the input's shape); the rest of this note is about the class losses.

Layout: the class axis is axis 1: logits (N, C) or (N, C, d1, d2, ...) (e.g. per-pixel
classification), class-index targets (N,) or (N, d1, d2, ...); a single sample (C,) with a 0-d
target also works. Derivation of the cross-entropy gradient: docs/backprop/softmax_cross_entropy.md.

Class indices are checked against the number of classes on the CPU (``_check_class_targets``). On a
GPU that check would wait for the device every step, so it is skipped there: the data pipeline
validates labels once, on the host, and the ops clip the indices they gather with (``_index_weights``),
so a bad label on a GPU gives a wrong loss, never a read out of bounds.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn.autograd import Function
from minicnn.backend import get_array_module

_REDUCTIONS = ("mean", "sum", "none")


def _class_view(v, ndim):
    """A (C,) vector reshaped to (1, C, 1, ...) so it broadcasts along the class axis of an ndim array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _index_weights(target, weight, ignore_index, num_classes, dtype, xp):
    """For class-index targets: (valid, safe_target, w_t). valid[i] is False for ignored samples,
    safe_target has them replaced by class 0 (and every index clipped to 0..C-1: on a GPU labels are
    not checked, see the module doc), w_t[i] = weight[target[i]] (1 without weights), 0 if ignored."""
    valid = target != ignore_index
    safe = xp.clip(xp.where(valid, target, xp.zeros((), dtype=target.dtype)), 0, num_classes - 1)
    w_t = valid.astype(dtype) if weight is None else weight[safe] * valid
    return valid, safe, w_t


def _one_hot(safe_target, num_classes, ndim, xp):
    """Boolean (N, C, d...) array, True at [i, target[i], ...]."""
    classes = _class_view(xp.arange(num_classes), ndim)
    return xp.expand_dims(safe_target, 1) == classes


def _reduce(loss, reduction, denom):
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):  # every sample ignored: 0 / 0 = nan, as PyTorch
        return total / denom


def _grad_scale(g, reduction, denom, xp):
    """The upstream gradient per sample: g ('sum'), g / D ('mean') or g_i shaped (N, 1, d...) ('none')."""
    if reduction == "none":
        return xp.expand_dims(g, 1)
    if reduction == "sum":
        return g
    if isinstance(denom, int):  # probability targets: D = the number of samples, known on the host
        return g / max(denom, 1)  # (D = 0: an empty batch, nothing to scale)
    # Class indices: D = the summed weights, on the device. D = 0 (every sample ignored): no sample
    # contributes and the gradient is 0. No `if` on D: on a GPU it would wait for the device.
    nonzero = denom != 0
    return g / xp.where(nonzero, denom, xp.ones((), dtype=denom.dtype)) * nonzero


class CrossEntropy(Function):
    """Fused log-softmax + negative log-likelihood with a per-class target distribution q:
        loss_i = -sum_c q_ic * log p_ic,   p_i = softmax(x_i)
    (with class indices, over the classes with q_ic != 0, as nll_loss's pick: a class with no target
    mass adds nothing even where log p_ic = -inf; probability targets keep 0 * -inf = NaN, as PyTorch).
    Class index y_i: q_i = onehot(y_i), times w[y_i] with class weights, 0 if y_i is ignored, and with
    label smoothing eps: q_ic = (1 - eps) * w[y_i] * [c == y_i] + eps / C * w_c;
    probabilities t_i: q_ic = w_c * ((1 - eps) * t_ic + eps / C).   (w = 1 without class weights.)
        dL/dx_i = g_i * (p_i * sum_c q_ic - q_i)      (= softmax(x_i) - onehot(y_i) in the plain case),
        dL/dt_ic = -g_i * (1 - eps) * w_c * log p_ic  (probability targets),
    where g_i is the upstream gradient divided, for reduction='mean', by sum_i w[y_i] over non-ignored
    samples (class indices) or by the number of samples (probabilities)."""

    saved_inputs = (1,)  # backward reads q, which is the target itself for plain probabilities

    def forward(self, x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        xp = get_array_module(x)
        num_classes, eps = x.shape[1], label_smoothing
        shifted = x - x.max(axis=1, keepdims=True)  # log-softmax, stably: finite for any logits
        log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))  # (N, C, d...)

        if target.dtype.kind in "iu":  # class indices
            valid, safe, w_t = _index_weights(target, weight, ignore_index, num_classes, x.dtype, xp)
            q = _one_hot(safe, num_classes, x.ndim, xp) * xp.expand_dims((1.0 - eps) * w_t, 1)
            if eps > 0:  # uniform part eps / C * w_c, for the non-ignored samples only
                w_c = 1.0 if weight is None else _class_view(weight, x.ndim)
                q += (eps / num_classes) * (w_c * xp.expand_dims(valid, 1))
            denom = w_t.sum()  # 'mean' divides by the summed weights of the non-ignored samples
        else:  # class probabilities
            q = target * (1.0 - eps) + eps / num_classes if eps > 0 else target
            if weight is not None:
                q = q * _class_view(weight, x.ndim)
            denom = math.prod(target.shape) // num_classes if num_classes else 0  # the number of samples

        self.log_p, self.q, self.denom = log_p, q, denom
        self.reduction, self.weight, self.eps = reduction, weight, eps
        terms = q * log_p
        if target.dtype.kind in "iu":
            terms = xp.where(q != 0, terms, 0)
        return _reduce(-terms.sum(axis=1), reduction, denom)

    def backward(self, g):
        xp = get_array_module(g)
        scale = _grad_scale(g, self.reduction, self.denom, xp)
        p = xp.exp(self.log_p)  # softmax(x)
        dx = dt = None
        if self.needs_input_grad[0]:
            # p * Q - q with Q = sum_c q_c: softmax - onehot for a one-hot target (Q = 1)
            dx = (p * self.q.sum(axis=1, keepdims=True) - self.q) * scale
        if self.needs_input_grad[1]:
            dt = self.log_p * (-(1.0 - self.eps) * scale)
            if self.weight is not None:
                dt *= _class_view(self.weight, dt.ndim)
        return dx, dt


class NLLLoss(Function):
    """loss_i = -w[y_i] * x[i, y_i]  (x holds log-probabilities; 0 for ignored samples).
    dL/dx[i, c] = -g_i * w[y_i] * [c == y_i],  g_i divided by sum_i w[y_i] for reduction='mean'."""

    saved_inputs = ()  # backward needs the (copied) indices and weights only

    def forward(self, x, target, weight=None, ignore_index=-100, reduction="mean"):
        xp = get_array_module(x)
        _, safe, w_t = _index_weights(target, weight, ignore_index, x.shape[1], x.dtype, xp)
        picked = xp.take_along_axis(x, xp.expand_dims(safe, 1), axis=1).squeeze(1)
        self.safe, self.w_t, self.reduction, self.denom = safe, w_t, reduction, w_t.sum()
        self.num_classes = x.shape[1]
        return _reduce(-(w_t * picked), reduction, self.denom)

    def backward(self, g):
        xp = get_array_module(g)
        scale = _grad_scale(g, self.reduction, self.denom, xp)
        one_hot = _one_hot(self.safe, self.num_classes, self.safe.ndim + 1, xp)
        return one_hot * (-xp.expand_dims(self.w_t, 1) * scale), None


class MSELoss(Function):
    """loss = (x - t)^2, reduced.   dL/dx = 2 (x - t) g,  dL/dt = -2 (x - t) g  (g / numel for 'mean')."""

    saved_inputs = ()  # x - t is kept

    def forward(self, x, t, reduction="mean"):
        self.diff, self.reduction = x - t, reduction
        return _reduce(self.diff * self.diff, reduction, self.diff.size)

    def backward(self, g):
        scale = 2.0 / max(self.diff.size, 1) if self.reduction == "mean" else 2.0
        dx = self.diff * (g * scale)
        return dx if self.needs_input_grad[0] else None, -dx if self.needs_input_grad[1] else None


_BCE_EPS = float(np.float32(1e-12))  # PyTorch's floor of p (1 - p), a float32 constant: 9.99999996e-13


class BinaryCrossEntropy(Function):
    """Binary cross-entropy of probabilities p in [0, 1] against targets y (same shape), weights w:
        loss = -w * (y * log p + (1 - y) * log(1 - p)),   each log clamped at -100 (PyTorch's rule:
    p = 0 or 1 gives a finite loss, 100 per element).
        dL/dp = g * w * (p - y) / max(p * (1 - p), 1e-12),   dL/dy = g * w * (log(1 - p) - log p)
    (g / numel for 'mean'). Derivation: docs/backprop/binary_cross_entropy.md."""

    saved_inputs = (0, 1)

    def forward(self, p, y, weight=None, reduction="mean"):
        xp = get_array_module(p)
        with np.errstate(divide="ignore"):  # log(0) = -inf, clamped to -100 below
            log_p, log_1mp = xp.log(p), xp.log1p(-p)
        loss = -(y * xp.maximum(log_p, -100.0) + (1 - y) * xp.maximum(log_1mp, -100.0))
        if weight is not None:
            loss = loss * weight
        self.p, self.y, self.weight, self.reduction = p, y, weight, reduction
        return _reduce(loss, reduction, loss.size)

    def backward(self, g):
        xp = get_array_module(g)
        p, y = self.p, self.y
        scale = g / max(p.size, 1) if self.reduction == "mean" else g
        if self.weight is not None:
            scale = scale * self.weight
        dp = dy = None
        if self.needs_input_grad[0]:
            dp = (p - y) / xp.maximum(p * (1 - p), _BCE_EPS) * scale
        if self.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):  # unclamped, as PyTorch: p = 0 gives inf
                dy = (xp.log1p(-p) - xp.log(p)) * scale
        return dp, dy


def _softplus_neg(x, xp):
    """softplus(-x) = log(1 + exp(-x)) = -log sigmoid(x), computed without overflow for any x."""
    return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)


class BinaryCrossEntropyWithLogits(Function):
    """Sigmoid + binary cross-entropy on logits x, targets y, weights w, positive-class weights q:
        loss = -w * (q * y * log s(x) + (1 - y) * log(1 - s(x)))
             = w * ((1 - y) * x + (1 + (q - 1) * y) * softplus(-x))     (stable for any x),
        dL/dx = g * w * ((1 + (q - 1) * y) * s(x) - q * y)    (= s(x) - y without weights),
        dL/dy = g * w * ((q - 1) * softplus(-x) - x)            (g / numel for 'mean').
    Derivation: docs/backprop/binary_cross_entropy.md."""

    saved_inputs = (0, 1)

    def forward(self, x, y, weight=None, pos_weight=None, reduction="mean"):
        xp = get_array_module(x)
        log_weight = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
        loss = (1 - y) * x + log_weight * _softplus_neg(x, xp)
        if weight is not None:
            loss = loss * weight
        self.x, self.y, self.weight, self.pos_weight, self.reduction = x, y, weight, pos_weight, reduction
        return _reduce(loss, reduction, loss.size)

    def backward(self, g):
        xp = get_array_module(g)
        x, y, q = self.x, self.y, self.pos_weight
        scale = g / max(x.size, 1) if self.reduction == "mean" else g
        if self.weight is not None:
            scale = scale * self.weight
        dx = dy = None
        if self.needs_input_grad[0]:
            with np.errstate(over="ignore"):  # exp(-x) = inf for x << 0 gives s = 0, as it should
                s = 1 / (1 + xp.exp(-x))
            dx = (s - y if q is None else (1 + (q - 1) * y) * s - q * y) * scale
        if self.needs_input_grad[1]:
            dy = (-x if q is None else (q - 1) * _softplus_neg(x, xp) - x) * scale
        return dx, dy


# ====================================================================== functional API and checks
def _check_reduction(reduction, op):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_tensor(t, name, op):
    from minicnn.tensor import Tensor

    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a minicnn Tensor, got {type(t).__name__}")


def _check_weight(weight, input, op):
    if weight is None:
        return None
    _check_tensor(weight, "weight", op)
    c = input.shape[1]
    if weight.shape != (c,):
        raise ValueError(
            f"{op}: weight must hold one value per class, shape ({c},) for an input of shape "
            f"{tuple(input.shape)}, got shape {tuple(weight.shape)}"
        )
    if weight.dtype != input.dtype:
        raise TypeError(
            f"{op}: weight has dtype {weight.dtype.name} but the input has dtype "
            f"{input.dtype.name}"
        )
    if weight.device != input.device:
        raise RuntimeError(f"{op}: weight is on {weight.device} but the input is on {input.device}")
    return weight.array


def _check_class_targets(input, target, ignore_index, op):
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if target.shape != expected:
        layout = "(N, C)" if input.ndim == 2 else "(N, C, d1, ...)"
        raise ValueError(
            f"{op}: for an input of shape {tuple(input.shape)} (layout {layout}) the class-index target "
            f"must have shape {expected}, got {tuple(target.shape)}"
        )
    c = input.shape[1]
    t = target.array
    if not isinstance(t, np.ndarray):  # on a GPU: no check (it would wait for the device), see the module doc
        return
    bad = (t != ignore_index) & ((t < 0) | (t >= c))
    if bad.any():
        value = int(t[bad].reshape(-1)[0])
        raise ValueError(
            f"{op}: target contains class index {value}, but the input has {c} classes: valid indices "
            f"are 0..{c - 1} (or ignore_index={ignore_index})"
        )


def _unbatched(input, target, op):
    """(C,) input with a 0-d (or (C,) probability) target -> a batch of one, as PyTorch allows."""
    if input.ndim == 0:
        raise ValueError(f"{op}: expected input of shape (N, C) or (N, C, d1, ...), got a 0-d tensor")
    if input.ndim == 1:
        if target.dtype.kind != "f" and target.ndim != 0:
            raise ValueError(
                f"{op}: for a single sample of shape {tuple(input.shape)} (layout (C,)) the class-index "
                f"target must be 0-d, got shape {tuple(target.shape)}"
            )
        target = target.unsqueeze(0) if target.dtype.kind == "f" else target.reshape(1)
        return input.unsqueeze(0), target, True
    return input, target, False


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross-entropy between logits ``input`` (N, C, *) and ``target``: class indices (N, *) (integer)
    or class probabilities (N, C, *) (float), as ``torch.nn.functional.cross_entropy``.

    ``weight`` (C,) rescales each class; with class indices, 'mean' divides by the summed weights of
    the non-ignored targets. ``label_smoothing`` = eps mixes the target with the uniform distribution:
    (1 - eps) * target + eps / C.
    """
    op = "cross_entropy"
    _check_tensor(input, "input", op)
    _check_tensor(target, "target", op)
    _check_reduction(reduction, op)
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: input must hold floating-point logits, got dtype {input.dtype.name}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    input, target, single = _unbatched(input, target, op)
    if target.dtype.kind == "f":
        if target.shape != input.shape:
            raise ValueError(
                f"{op}: a floating-point target is read as class probabilities and must have the input's "
                f"shape {tuple(input.shape)}, got {tuple(target.shape)}. For class indices of shape "
                f"{(input.shape[0],) + tuple(input.shape[2:])} pass an integer tensor (target.long())."
            )
        if target.dtype != input.dtype:
            raise TypeError(
                f"{op}: target has dtype {target.dtype.name} but the input has dtype "
                f"{input.dtype.name}"
            )
    elif target.dtype.kind in "iu":
        _check_class_targets(input, target, ignore_index, op)
    else:
        raise TypeError(
            f"{op}: target must hold integer class indices or float probabilities, got dtype "
            f"{target.dtype.name}"
        )
    out = CrossEntropy.apply(
        input,
        target,
        weight=_check_weight(weight, input, op),
        ignore_index=int(ignore_index),
        reduction=reduction,
        label_smoothing=float(label_smoothing),
    )
    return out.reshape(()) if single and reduction == "none" else out


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` (N, C, *) at class indices ``target`` (N, *)."""
    op = "nll_loss"
    _check_tensor(input, "input", op)
    _check_tensor(target, "target", op)
    _check_reduction(reduction, op)
    if input.dtype.kind != "f":
        raise TypeError(
            f"{op}: input must hold floating-point log-probabilities, got dtype "
            f"{input.dtype.name}"
        )
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {target.dtype.name}")
    input, target, single = _unbatched(input, target, op)
    _check_class_targets(input, target, ignore_index, op)
    out = NLLLoss.apply(
        input,
        target,
        weight=_check_weight(weight, input, op),
        ignore_index=int(ignore_index),
        reduction=reduction,
    )
    return out.reshape(()) if single and reduction == "none" else out


def mse_loss(input, target, reduction="mean"):
    """Mean squared error between ``input`` and ``target`` of the same shape."""
    op = "mse_loss"
    _check_tensor(input, "input", op)
    _check_tensor(target, "target", op)
    _check_reduction(reduction, op)
    if input.shape != target.shape:
        raise ValueError(
            f"{op}: input and target must have the same shape, got {tuple(input.shape)} and "
            f"{tuple(target.shape)} (minicnn does not broadcast them silently)"
        )
    if input.dtype != target.dtype:
        raise TypeError(f"{op}: input has dtype {input.dtype.name} but target has dtype {target.dtype.name}")
    return MSELoss.apply(input, target, reduction=reduction)


# ---------------------------------------------------------------------- binary cross-entropy
def _check_binary(input, target, op):
    _check_tensor(input, "input", op)
    _check_tensor(target, "target", op)
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: input must be a floating-point tensor, got dtype {input.dtype.name}")
    if target.dtype != input.dtype:
        raise TypeError(
            f"{op}: target has dtype {target.dtype.name} but the input has dtype {input.dtype.name}; "
            f"pass target.to({input.dtype.name}) (a 0/1 label tensor is float, as in PyTorch)"
        )
    if target.shape != input.shape:
        raise ValueError(
            f"{op}: target must have the input's shape {tuple(input.shape)} (one 0..1 label per "
            f"prediction), got {tuple(target.shape)} (minicnn does not broadcast them silently)"
        )


def _check_elementwise_weight(w, input, name, op):
    """A weight that broadcasts to the input's shape (without growing it), as a constant array of the
    input's dtype on its device; None stays None."""
    if w is None:
        return None
    _check_tensor(w, name, op)
    try:
        shape = np.broadcast_shapes(tuple(w.shape), tuple(input.shape))
    except ValueError:
        shape = None
    if shape != tuple(input.shape):
        raise ValueError(
            f"{op}: {name} of shape {tuple(w.shape)} must broadcast to the input's shape "
            f"{tuple(input.shape)}"
        )
    if w.device != input.device:
        raise RuntimeError(f"{op}: {name} is on {w.device} but the input is on {input.device}")
    if w.requires_grad:
        raise RuntimeError(
            f"{op}: the loss is not differentiable with respect to {name} (as in PyTorch); "
            f"pass {name}.detach()"
        )
    return w.array if w.dtype == input.dtype else w.array.astype(input.dtype)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """Binary cross-entropy between probabilities ``input`` (any shape, values in [0, 1], e.g. after
    a sigmoid) and ``target`` of the same shape, as ``torch.nn.functional.binary_cross_entropy``.
    ``weight`` (broadcast to the input's shape) rescales each element's loss."""
    op = "binary_cross_entropy"
    _check_legacy(size_average, reduce, op)
    _check_reduction(reduction, op)
    _check_binary(input, target, op)
    w = _check_elementwise_weight(weight, input, "weight", op)
    p = input.array
    if isinstance(p, np.ndarray):  # on a GPU: no check (it would wait for the device)
        bad = ~((p >= 0) & (p <= 1))
        if bad.any():
            value = p[bad].reshape(-1)[0]
            raise ValueError(
                f"{op}: all elements of input should be between 0 and 1 (probabilities), found {value}; "
                "for raw scores (logits) use binary_cross_entropy_with_logits"
            )
    return BinaryCrossEntropy.apply(input, target, weight=w, reduction=reduction)


def binary_cross_entropy_with_logits(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None
):
    """Sigmoid and binary cross-entropy in one stable op, on raw scores ``input`` and 0..1 ``target``
    of the same shape, as ``torch.nn.functional.binary_cross_entropy_with_logits``. ``weight``
    rescales each element's loss; ``pos_weight`` (e.g. one value per class, broadcast along the last
    axis) rescales the positive term y * log sigmoid(x)."""
    op = "binary_cross_entropy_with_logits"
    _check_legacy(size_average, reduce, op)
    _check_reduction(reduction, op)
    _check_binary(input, target, op)
    w = _check_elementwise_weight(weight, input, "weight", op)
    q = _check_elementwise_weight(pos_weight, input, "pos_weight", op)
    return BinaryCrossEntropyWithLogits.apply(input, target, weight=w, pos_weight=q, reduction=reduction)


def _check_legacy(size_average, reduce, op):
    if size_average is not None or reduce is not None:
        raise ValueError(
            f"{op}: size_average and reduce are deprecated in PyTorch and not supported; "
            "use reduction='mean', 'sum' or 'none'"
        )
