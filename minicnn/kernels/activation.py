"""ReLU as loops: the compiled twin of ``minicnn.ops.activation.ReLU``
(a subclass of the same name).

Two kernels, each one pass over the flattened array, split between the threads (``prange``):

* ``relu_forward``: out = 0 where x <= 0, else x   (equals ``maximum(x, 0)``, NaN kept);
* ``relu_backward``: dx = 0 where out <= 0, else g (equals ``where(out <= 0, 0, g)``: 0 where
  x <= 0 even for an inf or NaN g, and g for a NaN input, as PyTorch).

Both equal the textbook bit for bit. The textbook's backward is NumPy's ``where``, several times
slower than a multiply by a mask, which is wrong for inf/NaN gradients: the loop is both exact and
one pass. ``NUMBA_DISABLE_JIT=1`` runs them as plain Python (slow), for a debugger.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minicnn.kernels import twin
from minicnn.ops import activation as textbook


@njit(parallel=True, cache=True)
def relu_forward(x):
    """Equals ``ReLU.forward``'s ``maximum(x, 0)`` for a 1-D x (a NaN stays NaN, -0.0 becomes 0.0)."""
    out = np.empty_like(x)
    for i in prange(x.size):
        out[i] = 0 if x[i] <= 0 else x[i]
    return out


@njit(parallel=True, cache=True)
def relu_backward(g, out):
    """Equals ``ReLU.backward``'s ``where(out <= 0, 0, g)`` for 1-D g and out."""
    dx = np.empty_like(g)
    for i in prange(g.size):
        dx[i] = 0 if out[i] <= 0 else g[i]
    return dx


_COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@twin(textbook.ReLU)
class ReLU(textbook.ReLU):
    """The textbook ``ReLU`` with both passes compiled (same name: the profiler and grad_fn show one op),
    on float32 and float64 arrays (others: the textbook's code)."""

    def forward(self, x):
        if x.dtype not in _COMPILED_DTYPES:
            return super().forward(x)
        self.out = relu_forward(np.ascontiguousarray(x).reshape(-1)).reshape(x.shape)
        return self.out

    def backward(self, g):
        if g.dtype != self.out.dtype or g.dtype not in _COMPILED_DTYPES:
            return super().backward(g)
        flat_g = np.ascontiguousarray(g).reshape(-1)
        return relu_backward(flat_g, self.out.reshape(-1)).reshape(g.shape)
