import pytest
from hypothesis import HealthCheck, settings

from parity_tests.harness import DEVICES

# Deterministic examples so CI is reproducible; no per-example deadline (first calls import torch).
settings.register_profile(
    "minicnn",
    derandomize=True,
    deadline=None,
    max_examples=20,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("minicnn")


@pytest.fixture(params=DEVICES)
def device(request):
    """Every parity test runs on 'cpu', and on 'cuda' when CuPy sees a GPU (skipped visibly otherwise)."""
    return request.param
