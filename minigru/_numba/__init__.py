"""The numba kernels of the ``"numba"`` elementwise engine (see :mod:`minigru.engine`); NumPy arrays only.

Each kernel does in ONE pass over memory, on ``prange`` threads, what the NumPy reference code
does as a chain of whole-array operations (each its own pass, one thread). The arithmetic is
the reference's, operation for operation, so the results agree to rounding; the tests compare
every kernel with the NumPy path in float32 and float64.

Conventions shared by the kernels (why the code looks as it does):

* Constants such as 1 and 1/2 arrive as arguments of the arrays' dtype (``one``, ``half``):
  numba promotes ``float32 op 1.0`` to float64, which would halve the SIMD width and change
  the rounding.
* ``error_model="numpy"``: a division by zero gives inf/nan as in NumPy instead of a Python
  exception, whose check on every division would stop LLVM from vectorising the loops.
* :func:`tanh` is numba's (the C library's) in float64 but a rational approximation in
  float32 (:mod:`minigru._numba.tanh`): the library call is scalar, many times slower than
  NumPy's SIMD tanh, while the approximation vectorises. Its error is below 8 float32 ulp
  (4e-7 absolute), which the tests check against float64.
* ``cache=True``: the compiled code is kept next to these files, so only the first run pays
  the compilation (a few seconds per kernel and dtype).
"""
from __future__ import annotations

import numba

from .batchnorm import bn_backward_train, bn_forward_train
from .gru import gru_backward_loop_reset_after, gru_forward_loop_reset_after
from .lstm import lstm_backward_loop, lstm_forward_loop
from .sgd import sgd_update
from .tanh import tanh_array

__all__ = ["set_threads", "get_threads", "gru_forward_loop_reset_after", "gru_backward_loop_reset_after",
           "lstm_forward_loop", "lstm_backward_loop",
           "bn_forward_train", "bn_backward_train", "sgd_update", "tanh_array"]


def set_threads(threads: int) -> None:
    """Use ``threads`` threads in the kernels' parallel loops (1 .. NUMBA_NUM_THREADS; 0: all of them)."""
    limit = numba.config.NUMBA_NUM_THREADS
    if threads == 0:
        threads = limit
    if not 0 < threads <= limit:
        raise ValueError(f"numba engine threads must be between 1 and {limit} (NUMBA_NUM_THREADS), or 0 for all, "
                         f"got {threads}")
    numba.set_num_threads(threads)


def get_threads() -> int:
    """The number of threads the kernels' parallel loops use now."""
    return numba.get_num_threads()
