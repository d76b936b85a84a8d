"""Test configuration. ``MLXGEOM_DEVICE=gpu pytest`` runs the suite on MLX's GPU backend."""

import os

import mlx.core as mx
from hypothesis import HealthCheck, settings

if os.environ.get("MLXGEOM_DEVICE", "cpu") == "gpu":
    mx.set_default_device(mx.gpu)
else:
    mx.set_default_device(mx.cpu)

settings.register_profile(
    "default",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
