"""``nn.Parameter``: a tensor that a :class:`~minicnn.nn.Module` registers as a learnable weight."""

from __future__ import annotations

from minicnn.tensor import Tensor, _as_array


class Parameter(Tensor):
    """A leaf tensor with ``requires_grad=True`` that modules register when assigned as an attribute.

    ``self.weight = Parameter(minicnn.empty(4, 3))`` makes ``weight`` appear in ``parameters()``,
    ``named_parameters()`` and ``state_dict()``. The data is shared with the tensor (no copy),
    as in PyTorch.
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = Tensor._make(_as_array([], dtype="float32"))
        self.array = data.array if isinstance(data, Tensor) else _as_array(data)
        self._vc = data._vc if isinstance(data, Tensor) else [0]
        self.grad = None
        self.grad_fn = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
