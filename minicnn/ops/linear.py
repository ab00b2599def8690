"""Fully connected layer: ``linear`` and its op class ``Linear``.

out = x @ W^T + b with W of shape (out_features, in_features), as PyTorch. The input may have any
number of leading dimensions (N, *, in_features); they are flattened into one batch axis so each
of forward and backward is a single matrix product. ``W.T`` and ``g.T`` are transposed *views*:
NumPy/CuPy hand them to BLAS with a "transposed" flag, so no transposed copy is ever made.
"""

from __future__ import annotations

import operator

from minicnn.autograd import Function


class Linear(Function):
    """out = x @ W^T + b,  x: (B, in), W: (out, in), b: (out,), leading dims flattened into B.
    dL/dx = g @ W  (B, in),   dL/dW = g^T @ x  (out, in),   dL/db = sum of g over B  (out,)."""

    # The three products are ``a @ b``; the kernels tier's twin (kernels/linear.py) replaces only this,
    # with products shared out over threads.
    matmul = staticmethod(operator.matmul)

    def forward(self, x, weight, bias=None):
        need_x, need_w = self.needs_input_grad[0], self.needs_input_grad[1]
        self.saved_inputs = (0,) * need_w + (1,) * need_x  # x for dW, W for dx (the version check)
        in_features, out_features = weight.shape[1], weight.shape[0]
        x2 = x.reshape(-1, in_features)
        out = self.matmul(x2, weight.T)
        if bias is not None:
            out += bias
        self.x_shape = x.shape
        self.x2 = x2 if need_w else None
        self.weight = weight if need_x else None
        return out.reshape(x.shape[:-1] + (out_features,))

    def backward(self, g):
        need_x, need_w, need_b = self.needs_input_grad
        g2 = g.reshape(-1, g.shape[-1]) if g.ndim != 2 else g
        dx = self.matmul(g2, self.weight).reshape(self.x_shape) if need_x else None
        dw = self.matmul(g2.T, self.x2) if need_w else None
        db = g2.sum(axis=0) if need_b else None
        return dx, dw, db


def linear(input, weight, bias=None):
    """y = x W^T + b for an input of shape (N, *, in_features) and W of shape (out_features, in_features)."""
    from minicnn.tensor import Tensor

    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"linear: {name} must be a minicnn Tensor, got {type(t).__name__}")
    if weight.ndim != 2:
        raise ValueError(
            f"linear: weight must have shape (out_features, in_features), got shape {tuple(weight.shape)}"
        )
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {tuple(input.shape)} cannot be multiplied with weight of shape "
            f"{tuple(weight.shape)}: expected input (N, *, in_features) with in_features = "
            f"weight.shape[1] = {weight.shape[1]}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(
            f"linear: bias must have shape (out_features,) = ({weight.shape[0]},), got {tuple(bias.shape)}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            raise TypeError(
                f"linear: {name} has dtype {t.dtype.name} but the input has dtype {input.dtype.name}; "
                "convert one of them (e.g. .to(input.dtype))"
            )
    return Linear.apply(input, weight, bias)
