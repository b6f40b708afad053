"""Shared test settings: hypothesis profiles and pinned float32 matmul precision."""

import os

import jax
from hypothesis import HealthCheck, settings

jax.config.update("jax_default_matmul_precision", "highest")

# "ci": bounded and deterministic, for the 2-core CI machine (the default).
settings.register_profile(
    "ci",
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# "thorough": many examples, for the GPU machine (HYPOTHESIS_PROFILE=thorough make test-thorough).
settings.register_profile(
    "thorough",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
