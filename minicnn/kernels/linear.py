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
    """``ops.linear.Linear`` with its products by ``gemm.matmul2d``; the same code otherwise."""

    matmul = staticmethod(gemm.matmul2d)
