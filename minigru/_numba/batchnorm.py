"""Batch normalisation's elementwise passes (:mod:`minigru.functional.batchnorm`), one kernel each.

x, dy, out, dx are viewed as (N, C, L) (L = values per channel and sample); every kernel is
parallel over the C channels, so each thread reads whole channels and no two threads write
the same sum. The per-channel (C,) arithmetic between the passes (running statistics, 1/σ,
the coefficients of eq. B11) stays in the NumPy code, so there is one place for it.

The sums accumulate in float64 whatever the dtype: a float32 sum over N·L = 65536 values,
added one by one, would lose digits that NumPy's blocked sums keep; ``fastmath={"reassoc"}``
lets LLVM split each sum into SIMD lanes (reordering, as NumPy's own sums do), and nothing
else (NaN and inf still propagate).
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["bn_stats", "bn_scale_shift", "bn_backward_sums", "bn_backward_combine"]


@numba.njit(cache=True, parallel=True, error_model="numpy", fastmath={"reassoc"})
def bn_stats(x, mean, var):
    """Per channel of x (N, C, L): mean (C,) and biased variance (C,) (eqs. B1, B2), written in place.

    Two passes over each channel (the mean first, then Σ(x − μ)², which is exact where
    Σx² − nμ² cancels); the second pass reads the channel while it is still in the cache.
    """
    batch, channels, length = x.shape
    count = batch * length
    for c in numba.prange(channels):
        total = 0.0
        for i in range(batch):
            for k in range(length):
                total += np.float64(x[i, c, k])
        mu = total / count
        squares = 0.0
        for i in range(batch):
            for k in range(length):
                d = np.float64(x[i, c, k]) - mu
                squares += d * d
        mean[c] = mu
        var[c] = squares / count


@numba.njit(cache=True, parallel=True, error_model="numpy")
def bn_scale_shift(x, scale, shift, out):
    """out = x·scale + shift per channel (eq. B7); x, out (N, C, L); scale, shift (C,)."""
    batch, channels, length = x.shape
    for c in numba.prange(channels):
        a = scale[c]
        b = shift[c]
        for i in range(batch):
            for k in range(length):
                out[i, c, k] = x[i, c, k] * a + b


@numba.njit(cache=True, parallel=True, error_model="numpy", fastmath={"reassoc"})
def bn_backward_sums(dy, x, mean, sum_dy, sum_dy_centred):
    """Per channel: Σ dy and Σ dy·(x − μ) (eq. B8) in one pass; dy, x (N, C, L); the rest (C,)."""
    batch, channels, length = x.shape
    for c in numba.prange(channels):
        mu = mean[c]
        s = 0.0
        sc = 0.0
        for i in range(batch):
            for k in range(length):
                d = dy[i, c, k]
                s += np.float64(d)
                sc += np.float64(d * (x[i, c, k] - mu))
        sum_dy[c] = s
        sum_dy_centred[c] = sc


@numba.njit(cache=True, parallel=True, error_model="numpy")
def bn_backward_combine(dy, x, mean, a, b, c_term, dx):
    """dx = a·dy + (b·(x − μ) + c) per channel (eq. B11); dy, x, dx (N, C, L); mean, a, b, c_term (C,)."""
    batch, channels, length = x.shape
    for c in numba.prange(channels):
        mu = mean[c]
        ac = a[c]
        bc = b[c]
        cc = c_term[c]
        for i in range(batch):
            for k in range(length):
                dx[i, c, k] = dy[i, c, k] * ac + ((x[i, c, k] - mu) * bc + cc)
