"""Test configuration. ``MLXGEOM_DEVICE=gpu pytest`` runs the suite on MLX's GPU backend.

Tests marked ``float64`` build float64 references with MLX itself; MLX has no float64 on the
GPU, so they run on the CPU device in both modes.
"""

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


@pytest.fixture(autouse=True)
def _device_for_test(request):
    mx.set_default_device(mx.cpu if request.node.get_closest_marker("float64") else DEVICE)
    yield
    mx.set_default_device(DEVICE)
