"""``minicnn.nn.functional`` (import as ``F``): the CNN ops as functions, with the same names and
argument order as ``torch.nn.functional``. Each function is a thin wrapper around an op class in
``minicnn/ops/`` where its forward and backward live side by side.
"""

# ---- convolution and pooling: minicnn/ops/conv.py, minicnn/ops/pooling.py

# ---- normalization, dropout, activations, linear, losses: minicnn/ops/{normalization,dropout,activation,linear,loss}.py
