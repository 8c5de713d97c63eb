"""Array backends: the one module that knows NumPy from CuPy.

Every kernel in minigru asks its *inputs* which array module to use::

    xp = get_array_module(x, weight)   # numpy or cupy
    out = xp.zeros(shape, dtype=x.dtype)

so the same code runs on the CPU (NumPy) and on an NVIDIA GPU (CuPy).
The *current backend* (``set_backend`` / ``use_backend``) only decides
where **new** arrays are made: parameters of freshly built layers and the
batches a ``DataLoader`` yields. Arrays never move by themselves: mixing a
NumPy and a CuPy array raises :class:`BackendMismatchError` instead of
copying silently, and ``module.to("cupy")`` / :func:`to_backend` move data
explicitly.

Randomness is drawn on the host from a ``numpy.random.Generator`` and then
moved to the backend (see :func:`random_uniform`), so a seed gives the same
numbers on NumPy and on CuPy.

No other module of minigru imports ``cupy``.
"""
from __future__ import annotations

import contextlib
import numbers
from typing import Iterator

import numpy as np

__all__ = [
    "BackendError", "BackendMismatchError", "BackendUnavailableError",
    "BACKENDS", "get_backend", "set_backend", "use_backend", "get_xp",
    "get_array_module", "backend_of", "is_array", "cupy_available",
    "to_numpy", "to_backend", "scatter_add", "make_rng",
    "random_uniform", "random_normal", "synchronize",
]

BACKENDS = ("numpy", "cupy")

_CUPY_HINT = ("install CuPy for your CUDA version: pip install 'minigru[cuda12]' "
              "(CUDA 12.x) or pip install 'minigru[cuda13]' (CUDA 13.x)")


class BackendError(RuntimeError):
    """Base class of backend problems."""


class BackendUnavailableError(BackendError):
    """The requested backend cannot be used here (CuPy or a CUDA device is missing)."""


class BackendMismatchError(BackendError, TypeError):
    """Arrays of two backends (NumPy and CuPy) met in one operation."""


_current = "numpy"
_cupy = None  # the imported cupy module, once asked for and found usable


def _load_cupy():
    """Import CuPy and check that a CUDA device is usable; raise a clear error if not."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy  # noqa: PLC0415  (the only cupy import in the package)
    except ImportError as err:
        raise BackendUnavailableError(f"the 'cupy' backend needs CuPy, which is not installed; {_CUPY_HINT}") from err
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver/runtime missing or broken
        raise BackendUnavailableError(
            f"CuPy is installed but CUDA is not usable ({err}); the 'cupy' backend needs an NVIDIA GPU "
            f"with a working driver, and a CuPy build that matches it ({_CUPY_HINT})") from err
    if count == 0:
        raise BackendUnavailableError("CuPy is installed but no CUDA device was found; use the 'numpy' backend")
    _cupy = cupy
    return cupy


def cupy_available() -> bool:
    """True when CuPy imports and at least one CUDA device is usable."""
    try:
        _load_cupy()
    except BackendUnavailableError:
        return False
    return True


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    return name


def get_xp(name: str | None = None):
    """The array module (``numpy`` or ``cupy``) of backend ``name`` (default: the current one)."""
    name = _check_name(name or _current)
    return np if name == "numpy" else _load_cupy()


def get_backend() -> str:
    """Name of the current backend, ``"numpy"`` or ``"cupy"``."""
    return _current


def set_backend(name: str) -> None:
    """Make ``name`` the backend on which new parameters and batches are created.

    Raises :class:`BackendUnavailableError` at once if ``name == "cupy"`` and
    CuPy or a CUDA device is missing.
    """
    global _current
    get_xp(name)  # fails early and clearly if unusable
    _current = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator:
    """Context manager: ``with use_backend("cupy"): model = CNNGRU()`` builds on the GPU.

    Yields the array module; the previous backend is restored on exit.
    """
    previous = _current
    set_backend(name)
    try:
        yield get_xp(name)
    finally:
        set_backend(previous)


def _is_cupy_array(a) -> bool:
    # Decided by the type's module, so that asking never imports CuPy.
    return type(a).__module__.split(".")[0] == "cupy"


def is_array(a) -> bool:
    """True for NumPy and CuPy arrays (and NumPy scalars)."""
    return isinstance(a, (np.ndarray, np.generic)) or _is_cupy_array(a)


def backend_of(a) -> str:
    """``"numpy"`` or ``"cupy"`` for an array; TypeError for anything else."""
    if isinstance(a, (np.ndarray, np.generic)):
        return "numpy"
    if _is_cupy_array(a):
        return "cupy"
    raise TypeError(f"expected a NumPy or CuPy array, got {type(a).__module__}.{type(a).__qualname__}"
                    + ("; convert torch tensors with .detach().cpu().numpy()" if type(a).__module__.startswith("torch") else ""))


def get_array_module(*arrays):
    """Return ``numpy`` or ``cupy``: the module that all array arguments belong to.

    ``None`` and Python numbers are ignored; with no arrays at all, NumPy is
    returned. Arrays of both backends raise :class:`BackendMismatchError`
    (minigru never copies between host and GPU behind your back).
    """
    found = None
    for a in arrays:
        if a is None or isinstance(a, numbers.Number):
            continue
        name = backend_of(a)
        if found is None:
            found = name
        elif name != found:
            raise BackendMismatchError(
                "arrays from two backends were mixed (numpy and cupy); move the model with "
                "module.to('cupy'|'numpy') or the data with minigru.backend.to_backend(array, name)")
    if found == "cupy":
        return _load_cupy()
    return np


def to_numpy(a) -> np.ndarray:
    """A NumPy copy (or view) of a NumPy or CuPy array; Python numbers become 0-d arrays."""
    if _is_cupy_array(a):
        return a.get()
    if isinstance(a, (np.ndarray, np.generic, numbers.Number, list, tuple)):
        return np.asarray(a)
    backend_of(a)  # raises a TypeError naming the unsupported type
    return np.asarray(a)


def to_backend(a, name: str | None = None, dtype=None):
    """Move ``a`` to backend ``name`` (default: current), optionally casting to ``dtype``.

    Returns ``a`` itself when it already lives there with that dtype.
    """
    xp = get_xp(name)
    if xp is np:
        out = to_numpy(a)
    else:
        out = xp.asarray(a)  # host -> device copy (or no-op for a CuPy array)
    if dtype is not None and out.dtype != np.dtype(dtype):
        out = out.astype(dtype)
    return out


def scatter_add(target, indices, values) -> None:
    """``target[indices] += values`` where repeated indices *accumulate*.

    Plain fancy-index ``+=`` keeps only one of several updates to the same
    element; this does what ``numpy.add.at`` does, on either backend
    (``cupyx.scatter_add`` on the GPU, which supports float32 and float64 on
    devices of compute capability 6.0 and newer).
    """
    xp = get_array_module(target, values)
    if xp is np:
        np.add.at(target, indices, values)
    else:
        import cupyx  # noqa: PLC0415  (ships with CuPy)
        cupyx.scatter_add(target, indices, values)


def make_rng(seed=None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, another Generator (returned as is) or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        raise TypeError("pass a numpy.random.Generator (np.random.default_rng(seed)) or an int seed, "
                        "not the legacy RandomState")
    return np.random.default_rng(seed)


def random_uniform(rng: np.random.Generator, shape, low=0.0, high=1.0, dtype=np.float32, like=None):
    """Uniform samples drawn on the host from ``rng`` and placed on the backend of ``like``
    (or the current backend when ``like`` is None)."""
    host = rng.uniform(low, high, size=shape).astype(dtype, copy=False)
    return _place(host, like)


def random_normal(rng: np.random.Generator, shape, mean=0.0, std=1.0, dtype=np.float32, like=None):
    """Normal samples drawn on the host from ``rng``, placed like :func:`random_uniform`."""
    host = rng.normal(mean, std, size=shape).astype(dtype, copy=False)
    return _place(host, like)


def _place(host: np.ndarray, like):
    if like is None:
        return to_backend(host)
    xp = get_array_module(like)
    return host if xp is np else xp.asarray(host)


def synchronize(xp=None) -> None:
    """Wait for queued GPU work (for honest timings); a no-op on NumPy."""
    if xp is not None and xp is not np:
        xp.cuda.get_current_stream().synchronize()
    elif xp is None and _cupy is not None:
        _cupy.cuda.get_current_stream().synchronize()
