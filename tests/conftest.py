"""Shared fixtures: every backend-aware test runs on NumPy, and on CuPy when a CUDA device is present."""
import numpy as np
import pytest

from minigru import backend

BACKEND_PARAMS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("cupy", id="cupy", marks=pytest.mark.skipif(
        not backend.cupy_available(), reason="CuPy backend needs CuPy and a CUDA device (none here)")),
]


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request):
    """Name of the backend under test; new parameters are created on it for the test's duration."""
    with backend.use_backend(request.param):
        yield request.param


@pytest.fixture
def xp(backend_name):
    """The array module (numpy or cupy) of the backend under test."""
    return backend.get_xp(backend_name)


@pytest.fixture
def rng():
    """A fresh, seeded numpy Generator per test."""
    return np.random.default_rng(1234)
