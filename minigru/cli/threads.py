"""``--threads N``: how many threads the BLAS library (OpenBLAS, MKL) may use during a command.

The default is **one thread** (unless ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` or
``MKL_NUM_THREADS`` is set, which is then respected). Why: the README's training
times were measured with ``OPENBLAS_NUM_THREADS=1``, and on a shared 2-core VM
with other jobs running, the quick-start run took 37 s with the BLAS default
(one thread per core) against 18 s with one thread (issue 14): threads that
wait on busy cores spin and steal time from each other. On an idle machine
more threads help the large matrix products (``--threads 2``, or 0 for the
library's default: all cores); docs/user_guide.md keeps the measurements of
both cases, which is why one thread, never badly wrong, is the default.

``--engine numba`` (:mod:`minigru.engine`) runs the elementwise work of the GRU, LSTM, batch norm
and SGD as numba kernels; they use ``--threads`` threads too (default one, for the same reason).
"""
from __future__ import annotations

import contextlib
import os

from .. import engine as engines
from ..perf import blas_summary
from .common import CLIError, plural

__all__ = ["thread_limit", "elementwise_engine", "THREAD_VARIABLES"]

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def thread_limit(threads: int | None):
    """Limit the BLAS threads inside the block; yields the choice as text for the run header."""
    if threads is not None and threads < 0:
        raise CLIError(f"--threads must be >= 0 (0: the BLAS library's default), got {threads}")
    if threads is None:
        variable = next((v for v in THREAD_VARIABLES if os.environ.get(v)), None)
        if variable is not None:
            yield f"BLAS threads from {variable}={os.environ[variable]}{_kernels()}"
            return
        threads, source = 1, "default"
    else:
        source = "--threads"
    if threads == 0:
        yield f"BLAS threads: the library's default{_kernels()}"
        return
    try:
        import threadpoolctl  # noqa: PLC0415  (optional: pip install threadpoolctl, part of minigru[train])
    except ImportError:
        if source == "--threads":
            raise CLIError("--threads needs threadpoolctl: pip install threadpoolctl") from None
        yield "BLAS threads: the library's default (threadpoolctl is not installed)"
        return
    import numpy  # noqa: F401,PLC0415  (loads NumPy's BLAS, so that threadpoolctl finds it)
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        yield f"{plural(threads, 'BLAS thread')} ({source}){_kernels()}"


def _kernels() -> str:
    """', ' and NumPy's BLAS library and kernels (minigru.perf.blas_summary) for the run header, or ''."""
    summary = blas_summary()
    return f", {summary}" if summary else ""


@contextlib.contextmanager
def elementwise_engine(name: str | None, threads: int | None):
    """The ``--engine`` choice inside the block (None: ``$MINIGRU_ENGINE`` or NumPy), its numba kernels
    on ``--threads`` threads (0: all cores; None: one); yields the header text, empty for NumPy."""
    with contextlib.ExitStack() as stack:
        try:
            name = name or engines.get_engine()
            stack.enter_context(engines.use_engine(name, threads if name == "numba" else None))
        except (engines.EngineUnavailableError, ValueError) as err:   # numba missing, bad MINIGRU_ENGINE
            raise CLIError(str(err)) from None
        yield "" if name == "numpy" else f", elementwise engine {name} ({plural(engines.engine_threads(), 'thread')})"
