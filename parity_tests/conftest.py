import pytest
from hypothesis import HealthCheck, settings

from minicnn import kernels
from parity_tests import cupy_standin
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

TIERS = ["textbook", "kernels"]


def pytest_report_header(config):
    return cupy_standin.describe_cuda_parameter()


@pytest.fixture(params=DEVICES)
def device(request):
    """Every parity test runs on 'cpu' and on 'cuda'. 'cuda' is the real GPU when CuPy sees one;
    without one it is the CuPy stand-in on NumPy (parity_tests/cupy_standin.py), installed for the
    test, so CI runs minicnn's GPU code path and catches what CuPy refuses. With MINICNN_REQUIRE_CUDA=1
    and no usable GPU, the cuda tests fail and say why (the GPU machine's setting)."""
    if request.param == "cuda":
        with cupy_standin.cuda_for_tests():
            yield request.param
    else:
        yield request.param


@pytest.fixture(params=TIERS, autouse=True)
def tier(request):
    """Every parity test runs on both tiers: the textbook ops (minicnn/ops/) and their compiled
    kernels (minicnn/kernels/, NumPy arrays only). On 'cuda' only the textbook tier runs (the
    kernels are CPU code), so the cuda x kernels combination is not collected (see below)."""
    if request.param == "kernels" and not kernels.available():
        pytest.skip(f"kernels tier: {kernels.unavailable_reason()}")
    with kernels.use_kernels(request.param == "kernels"):
        yield request.param


def pytest_collection_modifyitems(config, items):
    """Drop the cuda x kernels combinations: on a GPU the kernels never run, so they would repeat
    the cuda x textbook tests."""
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        (dropped if params.get("device") == "cuda" and params.get("tier") == "kernels" else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
