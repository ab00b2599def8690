"""``minicnn.nn.functional`` (import as ``F``): the CNN ops as functions, with the same names and
argument order as ``torch.nn.functional``. Each function is a thin wrapper around an op class in
``minicnn/ops/`` where its forward and backward live side by side.
"""

# ---- convolution and pooling: minicnn/ops/conv.py, minicnn/ops/conv_transpose.py, minicnn/ops/pooling.py
from minicnn.ops import conv as _conv  # noqa: E402
from minicnn.ops import conv_transpose as _conv_transpose  # noqa: E402
from minicnn.ops import pooling as _pooling  # noqa: E402

conv2d = _conv.conv2d
conv_transpose2d = _conv_transpose.conv_transpose2d
max_pool2d, avg_pool2d = _pooling.max_pool2d, _pooling.avg_pool2d
adaptive_avg_pool2d = _pooling.adaptive_avg_pool2d

# ---- normalization, dropout, activations, linear, losses:
#      minicnn/ops/{normalization,dropout,activation,linear,loss}.py
# Each function checks its arguments (errors name the op, the expected layout and what was received)
# and calls its op class; the forward/backward code is in the module named on its import line.
from minicnn.ops import activation as _activation  # noqa: E402
from minicnn.ops import dropout as _dropout  # noqa: E402
from minicnn.ops import linear as _linear  # noqa: E402
from minicnn.ops import loss as _loss  # noqa: E402
from minicnn.ops import normalization as _normalization  # noqa: E402

batch_norm = _normalization.batch_norm
dropout, dropout2d = _dropout.dropout, _dropout.dropout2d
relu, leaky_relu, elu, gelu = _activation.relu, _activation.leaky_relu, _activation.elu, _activation.gelu
silu, sigmoid, tanh = _activation.silu, _activation.sigmoid, _activation.tanh
softmax, log_softmax = _activation.softmax, _activation.log_softmax
linear = _linear.linear
cross_entropy, nll_loss, mse_loss = _loss.cross_entropy, _loss.nll_loss, _loss.mse_loss
binary_cross_entropy = _loss.binary_cross_entropy
binary_cross_entropy_with_logits = _loss.binary_cross_entropy_with_logits


# ---- one-hot labels (no gradient: integer in, integer out)
def one_hot(tensor, num_classes=-1):
    """``torch.nn.functional.one_hot``: int64 class indices of shape S -> int64 (*S, num_classes) with
    a 1 at each index. ``num_classes=-1`` takes the largest index + 1 (on a GPU that reads the data
    back, as PyTorch's does)."""
    from minicnn.tensor import Tensor

    if not isinstance(tensor, Tensor) or tensor.dtype.kind not in "iu":
        got = tensor.dtype.name if isinstance(tensor, Tensor) else type(tensor).__name__
        raise TypeError(f"one_hot: expected a tensor of int64 class indices, got {got}")
    labels = tensor.array
    xp = tensor._xp
    if labels.size and int(labels.min()) < 0:
        raise ValueError("one_hot: class values must be non-negative")
    if num_classes == -1:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    elif labels.size and int(labels.max()) >= num_classes:
        raise ValueError(
            f"one_hot: class values must be smaller than num_classes={num_classes}, found {int(labels.max())}"
        )
    out = (labels[..., None] == xp.arange(num_classes)).astype(xp.int64)
    return Tensor._make(out)
