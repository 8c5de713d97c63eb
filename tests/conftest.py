"""Shared fixtures: every backend-aware test runs on three backends.

- ``[numpy]``: NumPy;
- ``[cupy]``: the strict CuPy stand-in of ``tests/_strict_cupy.py`` (NumPy
  underneath, CuPy's refusals on top), always, so CuPy code paths are tested
  on every CPU-only run;
- ``[cupy-gpu]``: the real CuPy, only where CuPy and a CUDA device are usable.
"""
import contextlib

import numpy as np
import pytest

from minigru import backend
from _strict_cupy import cupy as strict_cupy

BACKEND_PARAMS = [
    pytest.param(("numpy", None), id="numpy"),
    pytest.param(("cupy", strict_cupy), id="cupy"),
    pytest.param(("cupy", None), id="cupy-gpu", marks=pytest.mark.skipif(
        not backend.cupy_available(), reason="the real CuPy backend needs CuPy and a CUDA device (none here)")),
]


@contextlib.contextmanager
def cupy_stand_in(module=strict_cupy):
    """Serve ``module`` as minigru's 'cupy' backend inside the block (None: the real CuPy)."""
    backend._use_cupy_stand_in(module)
    if module is not None:
        module.counters.reset()
    try:
        yield module
    finally:
        backend._use_cupy_stand_in(None)


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request):
    """Name of the backend under test ("numpy" or "cupy"); new parameters are created on it for the test's duration."""
    name, stand_in = request.param
    with cupy_stand_in(stand_in), backend.use_backend(name):
        yield name


@pytest.fixture
def xp(backend_name):
    """The array module (numpy, the CuPy stand-in or cupy) of the backend under test."""
    return backend.get_xp(backend_name)


@pytest.fixture(params=BACKEND_PARAMS[1:])
def cupy_xp(request):
    """The CuPy module under test (the stand-in; the real CuPy where a GPU exists); the current backend stays NumPy."""
    _, stand_in = request.param
    with cupy_stand_in(stand_in):
        yield backend.get_xp("cupy")


@pytest.fixture
def strict_cupy_backend():
    """The CuPy stand-in as the current 'cupy' backend, its sync and copy counters at zero."""
    with cupy_stand_in() as module, backend.use_backend("cupy"):
        yield module


@pytest.fixture
def rng():
    """A fresh, seeded numpy Generator per test."""
    return np.random.default_rng(1234)


@pytest.fixture
def interrupted_after_epoch(monkeypatch):
    """``with interrupted_after_epoch(k): cli.main([...train...])``: the CLI's training stops as by
    Ctrl-C right after epoch ``k``'s files are written, as an interrupted run would."""
    from minigru.cli import train as cli_train
    real_writer = cli_train._epoch_writer

    @contextlib.contextmanager
    def interrupted(epoch):
        def interrupting_writer(*args):
            write = real_writer(*args)

            def on_epoch_end(trainer, record):
                write(trainer, record)
                if record["epoch"] == epoch:
                    raise KeyboardInterrupt
            return on_epoch_end

        monkeypatch.setattr(cli_train, "_epoch_writer", interrupting_writer)
        try:
            yield
        finally:
            monkeypatch.setattr(cli_train, "_epoch_writer", real_writer)
    return interrupted
