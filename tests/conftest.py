"""Test configuration. ``MLXGEOM_DEVICE=gpu pytest`` runs the suite on MLX's GPU backend.

MLX has no float64 on the GPU, so in GPU mode a test runs on the CPU device when it uses
float64 MLX arrays: marked ``float64``, parametrised with ``mx.float64`` (or the input kind
``"float64"``), or naming ``mx.float64`` in its body. Helpers that build float64 references
themselves do so under ``helpers.on_cpu()``. Everything else runs on the GPU.
"""

import inspect
import os

import mlx.core as mx
import pytest
from hypothesis import HealthCheck, settings

DEVICE = mx.gpu if os.environ.get("MLXGEOM_DEVICE", "cpu") == "gpu" else mx.cpu
mx.set_default_device(DEVICE)

settings.register_profile(
    "default",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config):
    config.addinivalue_line("markers", "float64: uses float64 MLX arrays, so it runs on the CPU device")


def _uses_float64(request) -> bool:
    if request.node.get_closest_marker("float64"):
        return True
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    if any((isinstance(v, mx.Dtype) and v == mx.float64) or (isinstance(v, str) and v == "float64")
           for v in params.values()):
        return True
    try:
        return "mx.float64" in inspect.getsource(request.function)
    except (OSError, TypeError):
        return False


@pytest.fixture(autouse=True)
def _device_for_test(request):
    mx.set_default_device(mx.cpu if _uses_float64(request) else DEVICE)
    yield
    mx.set_default_device(DEVICE)
