"""Elementwise engines: plain NumPy (the readable reference) or fused numba kernels (``minigru[fast]``).

The time of a training step on the CPU goes to GEMMs (BLAS, already multi-threaded) and to
elementwise passes: the GRU's gate arithmetic, batch normalisation, the optimizer's update.
NumPy runs each elementwise operation as its own pass over memory, on one thread. The
``"numba"`` engine replaces a few of those chains of passes by compiled kernels
(:mod:`minigru._numba`) that make ONE pass, on several threads:

* the GRU's fused sequence kernel, ``reset_after=True`` (docs/derivations.md eqs. G3-G5, G7
  forward; G8-G13 backward), and the LSTM's (eqs. M1-M8),
* batch normalisation in training mode (statistics and normalisation; the backward's sums and ``dx``;
  eqs. B1-B11),
* the SGD update (docs/user_guide.md eqs. O1-O3: weight decay, momentum, Nesterov).

Turn it on with ``minigru.engine.set_engine("numba")`` (or ``with use_engine("numba"):``), the
environment variable ``MINIGRU_ENGINE=numba``, or ``python -m minigru train --engine numba``.
It needs numba: ``pip install 'minigru[fast]'``. Everything else, the CuPy backend, and arrays
the kernels do not cover (other dtypes, non-contiguous views) keep the NumPy code, which
stays the reference: tests compare the two.

One limit: numba runs its parallel loops on the first threading layer it finds (TBB, OpenMP, or
its own "workqueue"); the workqueue runs one parallel kernel at a time per process, so where it
is the layer (``numba.threading_layer()`` says), use the engine from one Python thread.

The engine only ever sees NumPy arrays: :func:`kernels_for` asks :mod:`minigru.backend`
(the one module that knows NumPy from CuPy) whether the arrays live on the host.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import numpy as np

from . import backend

__all__ = ["ENGINES", "DEFAULT_ENGINE", "ENGINE_VARIABLE", "DEFAULT_THREADS", "EngineUnavailableError", "get_engine",
           "set_engine", "use_engine", "engine_threads", "kernels_for", "numba_available"]

ENGINES = ("numpy", "numba")
DEFAULT_ENGINE = "numpy"
"""The engine used when neither :func:`set_engine` nor ``MINIGRU_ENGINE`` chooses one."""
ENGINE_VARIABLE = "MINIGRU_ENGINE"
DEFAULT_THREADS = 1
"""Threads of the numba kernels until :func:`set_engine` says otherwise (unless ``NUMBA_NUM_THREADS`` is set).

One, for the reason ``--threads`` defaults to one BLAS thread (minigru.cli.threads): on a shared
machine a parallel loop waits for its slowest thread, and a thread whose core is busy with
another job makes every step wait (the benchmark, run beside two training jobs on 2 cores,
showed the 2-thread kernels far slower than 1). On an idle machine ask for more."""
_FAST_HINT = "pip install 'minigru[fast]'"
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # what the kernels are compiled for

_current: str | None = None   # None: not chosen yet, read MINIGRU_ENGINE on first use
_kernels = None               # the imported minigru._numba package, once the numba engine was chosen


class EngineUnavailableError(RuntimeError):
    """The requested engine cannot be used here (numba is not installed)."""


def _check_name(name) -> str:
    if name not in ENGINES:
        raise ValueError(f"unknown elementwise engine {name!r}; choose one of {ENGINES}")
    return name


def _load_numba():
    """Import the numba kernels; a one-line error naming the extra when numba is missing."""
    global _kernels
    if _kernels is None:
        try:
            from . import _numba  # noqa: PLC0415  (imports numba: only when the engine is asked for)
        except ImportError as err:
            raise EngineUnavailableError(f"the 'numba' elementwise engine needs numba, which could not be "
                                         f"imported ({err}); {_FAST_HINT}") from None
        if not os.environ.get("NUMBA_NUM_THREADS"):
            _numba.set_threads(DEFAULT_THREADS)
        _kernels = _numba
    return _kernels


def numba_available() -> bool:
    """True when the numba engine can be used (numba imports)."""
    try:
        _load_numba()
    except EngineUnavailableError:
        return False
    return True


def set_engine(name: str, threads: int | None = None) -> None:
    """Make ``name`` (``"numpy"`` or ``"numba"``) the elementwise engine of every following kernel call.

    ``threads``: how many threads the numba kernels use (numba's ``set_num_threads``; 0: all cores,
    ``NUMBA_NUM_THREADS``; None keeps the current number, at first :data:`DEFAULT_THREADS`). Raises
    :class:`EngineUnavailableError` at once when numba is asked for and missing.
    """
    global _current
    _check_name(name)
    if name == "numba":
        kernels = _load_numba()
        if threads is not None:
            kernels.set_threads(threads)
    elif threads is not None:
        raise ValueError("threads applies to the 'numba' engine only (NumPy's elementwise work is single-threaded)")
    _current = name


def get_engine() -> str:
    """The current engine: what :func:`set_engine` chose, else ``$MINIGRU_ENGINE``, else :data:`DEFAULT_ENGINE`."""
    if _current is None:
        chosen = os.environ.get(ENGINE_VARIABLE, "") or DEFAULT_ENGINE
        if chosen not in ENGINES:
            raise ValueError(f"{ENGINE_VARIABLE}={chosen!r} names no elementwise engine; choose one of {ENGINES}")
        set_engine(chosen)
    return _current


def engine_threads() -> int:
    """Threads of the current engine's elementwise work: numba's thread count, 1 for NumPy."""
    return _kernels.get_threads() if get_engine() == "numba" else 1


@contextlib.contextmanager
def use_engine(name: str, threads: int | None = None) -> Iterator[str]:
    """Context manager: ``with use_engine("numba"): ...``; the previous engine (and thread count) come back on exit."""
    previous = get_engine()
    previous_threads = _kernels.get_threads() if _kernels is not None else None
    set_engine(name, threads)
    try:
        yield name
    finally:
        set_engine(previous)
        if previous_threads is not None and threads is not None:
            _kernels.set_threads(previous_threads)


def kernels_for(*arrays):
    """The numba kernels (:mod:`minigru._numba`) when the numba engine is on and they apply, else None.

    They apply to host (NumPy) arrays that are C-contiguous and all float32 or all float64
    (``None`` entries are skipped); anything else keeps the NumPy code path.
    """
    if get_engine() != "numba":
        return None
    present = [a for a in arrays if a is not None]
    if not backend.values_on_host(*present):
        return None
    dtype = present[0].dtype if present else None
    if dtype not in _DTYPES:
        return None
    if any(a.dtype != dtype or not a.flags.c_contiguous for a in present):
        return None
    return _kernels
