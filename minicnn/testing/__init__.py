"""Check your own layer against PyTorch, and minicnn's gradients against finite differences.

    from minicnn.testing import gradcheck, compare_with_torch

    gradcheck(my_fn, x64)                                # backward vs central differences (float64)
    compare_with_torch(F.conv2d, torch.nn.functional.conv2d, (2, 3, 9, 7), (4, 3, 3, 3))
    compare_with_torch(nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 3), (2, 3, 9, 7))
    compare_optimizer_with_torch(lambda ps: optim.Adam(ps), lambda ps: torch.optim.Adam(ps), [(3, 4)])

Importing this module needs no PyTorch: the comparisons import it when they run and say how to
install it if it is missing. ``python -m minicnn.check`` runs every op of minicnn through these
functions. Guide: docs/check.md; a tutorial that writes an op and catches a wrong backward:
docs/custom_op.md.

One comparison rule everywhere (``minicnn.testing._report``): ``|mine - torch| <= atol + rtol * |torch|``
with ``atol = rtol * max|torch|`` per tensor; ``rtol`` 1e-10 in float64, 1e-4 in float32 (``RTOL``).
"""

from minicnn.testing._gradcheck import GradcheckError, gradcheck
from minicnn.testing._optim import compare_optimizer_with_torch
from minicnn.testing._parity import compare_with_torch
from minicnn.testing._report import (
    RTOL,
    ParityError,
    ParityReport,
    Row,
    assert_close,
    compare_arrays,
    default_rtol,
)

__all__ = [
    "RTOL",
    "GradcheckError",
    "ParityError",
    "ParityReport",
    "Row",
    "assert_close",
    "compare_arrays",
    "compare_optimizer_with_torch",
    "compare_with_torch",
    "default_rtol",
    "gradcheck",
]
