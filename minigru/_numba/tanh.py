"""``tanh`` for the numba kernels: vectorisable in float32, the C library's in float64.

numba compiles ``np.tanh`` of a scalar to a call of the C library's ``tanhf``/``tanh``, which
LLVM cannot vectorise: many times slower than NumPy's SIMD tanh on float32. In float32 the
kernels therefore use the rational approximation of Eigen (``ptanh_float``, also used by
TensorFlow): the input clamped to ±7.905 (where tanh rounds to ±1 in float32), then
``x·p(x²) / q(x²)`` with p of degree 6 and q of degree 3 in x². It is plain multiply-add and
one division, so a loop of it vectorises; its error is below 8 ulp (4e-7 absolute), checked by
``tests/test_engine.py`` against float64. NaN propagates (``np.minimum``/``np.maximum`` keep it).
In float64 (gradient checks, where accuracy matters more than speed) the library tanh is kept.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload

__all__ = ["tanh", "tanh_array"]

_F = np.float32
_CLAMP = _F(7.90531110763549805)
_A1, _A3, _A5, _A7 = _F(4.89352455891786e-03), _F(6.37261928875436e-04), _F(1.48572235717979e-05), \
    _F(5.12229709037114e-08)
_A9, _A11, _A13 = _F(-8.60467152213735e-11), _F(2.00018790482477e-13), _F(-2.76076847742355e-16)
_B0, _B2, _B4, _B6 = _F(4.89352518554385e-03), _F(2.26843463243900e-03), _F(1.18534705686654e-04), \
    _F(1.19825839466702e-06)


def tanh(x):
    """tanh of a scalar inside a numba kernel (pure-Python calls are not supported)."""
    raise TypeError("minigru._numba.tanh.tanh is only usable inside numba-compiled code")


@overload(tanh)
def _tanh_for(x):
    if x == types.float32:
        def rational(x):
            c = np.minimum(np.maximum(x, -_CLAMP), _CLAMP)
            c2 = c * c
            p = c2 * _A13 + _A11
            p = c2 * p + _A9
            p = c2 * p + _A7
            p = c2 * p + _A5
            p = c2 * p + _A3
            p = c2 * p + _A1
            q = c2 * _B6 + _B4
            q = c2 * q + _B2
            q = c2 * q + _B0
            return c * p / q
        return rational
    return lambda x: np.tanh(x)


@numba.njit(cache=True, error_model="numpy")
def tanh_array(x, out):
    """``out = tanh(x)`` elementwise over 1-D arrays, as the kernels compute it (for the tests)."""
    for i in range(x.size):
        out[i] = tanh(x[i])
