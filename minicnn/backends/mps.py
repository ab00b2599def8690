"""``minicnn.backends.mps``: the probe scripts call to choose Apple's GPU
(``torch.backends.mps.is_available()``). minicnn has no MPS backend, so both answers are False and a
script's ``elif use_mps:`` branch is never taken: it falls through to the CPU."""


def is_available() -> bool:
    """False: minicnn does not run on Apple's Metal GPU (MPS)."""
    return False


def is_built() -> bool:
    """False: minicnn is not built with MPS."""
    return False
