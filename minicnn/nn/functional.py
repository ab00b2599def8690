"""``minicnn.nn.functional`` (import as ``F``): the CNN ops as functions, with the same names and
argument order as ``torch.nn.functional``. Each function is a thin wrapper around an op class in
``minicnn/ops/`` where its forward and backward live side by side.
"""

# ---- convolution and pooling: minicnn/ops/conv.py, minicnn/ops/pooling.py
from minicnn.ops.conv import conv2d  # noqa: E402,F401
from minicnn.ops.pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d  # noqa: E402,F401

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
