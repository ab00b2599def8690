"""Loss layers: ``CrossEntropyLoss``, ``NLLLoss``, ``MSELoss``, ``BCELoss``, ``BCEWithLogitsLoss`` with
PyTorch's arguments and reductions.

``reduction``: ``'mean'`` (default), ``'sum'`` or ``'none'`` (per-element losses). With class
``weight`` and ``'mean'``, the weighted sum is divided by the sum of the weights of the targets
(not by N), as in PyTorch. Targets equal to ``ignore_index`` contribute nothing.
"""

from __future__ import annotations

from minicnn.nn import functional as F
from minicnn.nn.module import Module
from minicnn.nn.modules._utils import check_tensor
from minicnn.tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        if size_average is not None or reduce is not None:
            raise ValueError(
                f"{type(self).__name__}: size_average and reduce are deprecated in PyTorch and not "
                "supported; "
                "use reduction='mean', 'sum' or 'none'"
            )
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, got {reduction!r}"
            )
        self.reduction = reduction


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        if weight is not None and not isinstance(weight, Tensor):
            raise TypeError(f"{type(self).__name__}: weight must be a minicnn Tensor of shape (C,) or None")
        self.register_buffer("weight", weight)  # a buffer, as in PyTorch: it moves with .to()

    def _check_class_inputs(self, input, target, probabilities_allowed):
        name = type(self).__name__
        check_tensor(self, input)
        check_tensor(self, target)
        if input.ndim == 0:
            raise ValueError(
                f"{name}: expected input of shape (N, C) or (N, C, d1, ...) scores, got a scalar"
            )
        num_classes = input.shape[1] if input.ndim >= 2 else input.shape[0]
        if self.weight is not None and self.weight.shape != (num_classes,):
            raise ValueError(
                f"{name}: weight must have one entry per class, shape ({num_classes},), "
                f"got {tuple(self.weight.shape)}"
            )
        expected = tuple(input.shape[:1] + input.shape[2:]) if input.ndim >= 2 else ()
        if target.dtype.kind in "iu":
            if target.shape != expected:
                raise ValueError(
                    f"{name}: for input of shape {tuple(input.shape)} expected class-index target of shape "
                    f"{expected}, "
                    f"got {tuple(target.shape)}"
                )
        elif target.dtype.kind == "f" and probabilities_allowed:
            if target.shape != input.shape:
                raise ValueError(
                    f"{name}: a probability target must have the input's shape {tuple(input.shape)}, "
                    f"got {tuple(target.shape)}"
                )
        else:
            raise TypeError(f"{name}: expected an int64 class-index target, got dtype {target.dtype.name}")


class CrossEntropyLoss(_WeightedLoss):
    """-log softmax(input)[target], averaged: input (N, C) raw scores (logits), target (N,) class indices.

    Also accepts (N, C, d1, ...) scores with (N, d1, ...) targets, and class-probability targets of
    the input's shape. ``label_smoothing`` = e mixes the one-hot target with the uniform distribution:
    (1 - e) * onehot + e / C.
    """

    def __init__(
        self,
        weight=None,
        size_average=None,
        ignore_index=-100,
        reduce=None,
        reduction="mean",
        label_smoothing=0.0,
    ):
        super().__init__(weight, size_average, reduce, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):
        self._check_class_inputs(input, target, probabilities_allowed=True)
        return F.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class NLLLoss(_WeightedLoss):
    """-input[n, target[n]] (times weight[target[n]]), reduced: input holds log-probabilities
    (e.g. from ``LogSoftmax(dim=1)``) of shape (N, C) or (N, C, d1, ...), target the class indices."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        self._check_class_inputs(input, target, probabilities_allowed=False)
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class MSELoss(_Loss):
    """mean((input - target)^2) (or sum / per element); input and target must have the same shape."""

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)

    def forward(self, input, target):
        check_tensor(self, input)
        check_tensor(self, target)
        if input.shape != target.shape:
            raise ValueError(
                f"MSELoss: input and target must have the same shape (no silent broadcasting), "
                f"got input {tuple(input.shape)} and target {tuple(target.shape)}"
            )
        return F.mse_loss(input, target, reduction=self.reduction)


class BCELoss(_Loss):
    """Binary cross-entropy -w * (y log p + (1 - y) log(1 - p)) between probabilities ``input`` in
    [0, 1] (e.g. after ``Sigmoid``) and 0..1 targets of the same shape, reduced. ``weight`` rescales
    each element's loss (it broadcasts to the input's shape)."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        if weight is not None and not isinstance(weight, Tensor):
            raise TypeError("BCELoss: weight must be a minicnn Tensor (it broadcasts to the input) or None")
        self.register_buffer("weight", weight)

    def forward(self, input, target):
        check_tensor(self, input)
        check_tensor(self, target)
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """``Sigmoid`` and ``BCELoss`` in one numerically stable op, on raw scores (logits). ``weight``
    rescales each element's loss; ``pos_weight`` (e.g. shape (C,) for C binary labels per sample)
    rescales the positive term, trading recall against precision."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        for name, value in (("weight", weight), ("pos_weight", pos_weight)):
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"BCEWithLogitsLoss: {name} must be a minicnn Tensor or None")
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        check_tensor(self, input)
        check_tensor(self, target)
        return F.binary_cross_entropy_with_logits(
            input, target, weight=self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )
