"""``minicnn.backends.cudnn``: the flags PyTorch scripts set, accepted and documented.

minicnn does not use cuDNN: on a GPU a convolution is im2col plus one cuBLAS GEMM (CuPy), the same
algorithm every call, so there is nothing to benchmark and nothing to choose. Hence:

* ``benchmark`` (PyTorch: try several convolution algorithms, keep the fastest) changes nothing;
* ``deterministic`` (PyTorch: use only deterministic algorithms) changes nothing either: minicnn's
  GPU ops give the same result for the same input on the same GPU, except where a float sum is
  split across threads in an order that may vary (scatter-adds in indexing backward);
* ``enabled`` and ``allow_tf32`` are read by nothing. minicnn never turns on TF32: CuPy's GEMMs
  use full float32 unless ``CUPY_TF32=1`` is set in the environment.
"""

benchmark = False
deterministic = False
enabled = True
allow_tf32 = False


def is_available() -> bool:
    """False: minicnn does not use cuDNN (see the module's doc)."""
    return False


def version():
    return None
