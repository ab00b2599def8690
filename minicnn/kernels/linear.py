"""linear's twin: the textbook's three matrix products, each shared out over threads (kernels/gemm.py).

No loop of its own: ``ops.linear.Linear`` is one GEMM per direction, and BLAS computes each.
The twin exists so that every GEMM of a training step on the kernels tier runs with one BLAS
thread per share. A GEMM with BLAS's own threads wakes OpenBLAS's thread pool, whose threads
then spin for a while, waiting for the next product, on the cores the compiled kernels need
(docs/kernels.md, "The GEMMs' threads").
"""

from __future__ import annotations

from minicnn.kernels import gemm, twin
from minicnn.ops import linear as textbook


@twin(textbook.Linear)
class Linear(textbook.Linear):
    """``ops.linear.Linear`` with its products by ``gemm.matmul2d``; the same products."""

    def forward(self, x, weight, bias=None):
        need_x, need_w = self.needs_input_grad[0], self.needs_input_grad[1]
        self.saved_inputs = (0,) * need_w + (1,) * need_x
        in_features, out_features = weight.shape[1], weight.shape[0]
        x2 = x.reshape(-1, in_features)
        out = gemm.matmul2d(x2, weight.T)
        if bias is not None:
            out += bias
        self.x_shape = x.shape
        self.x2 = x2 if need_w else None
        self.weight = weight if need_x else None
        return out.reshape(x.shape[:-1] + (out_features,))

    def backward(self, g):
        need_x, need_w, need_b = self.needs_input_grad
        g2 = g.reshape(-1, g.shape[-1]) if g.ndim != 2 else g
        dx = gemm.matmul2d(g2, self.weight).reshape(self.x_shape) if need_x else None
        dw = gemm.matmul2d(g2.T, self.x2) if need_w else None
        db = g2.sum(axis=0) if need_b else None
        return dx, dw, db
