"""Batch normalisation in training mode (:mod:`minigru.functional.batchnorm`), each direction as one kernel.

x, dy, out, dx are viewed as (N, C, L) (L = values per channel and sample); the kernels are
parallel over the C channels, so each thread owns whole channels and no two threads write the
same sum. A channel is read from memory once and then, while it is still in the cache, a second
time: forward computes μ and σ² (eqs. B1, B2) and then writes y = x·γρ + (β − μγρ) (eqs. B3,
B7); backward computes Σdy and Σdy·(x − μ) (eq. B8) and then writes dx (eq. B11). The NumPy
path makes separate whole-array passes for these (plus the temporaries x − μ), so every pass
there comes from memory.

The per-channel scalars (ρ = 1/sqrt(σ² + eps), the coefficients a, b, c of eq. B11) are computed
in the arrays' dtype with the reference's operations, from the sums rounded to that dtype. The
sums themselves accumulate in float64 whatever the dtype: a float32 sum over N·L = 65536 values
added one by one would lose digits that NumPy's blocked sums keep; ``fastmath={"reassoc"}`` lets
LLVM split each sum into SIMD lanes (a reordering, as NumPy's sums do) and nothing else, so NaN
and inf still propagate.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["bn_forward_train", "bn_backward_train"]


@numba.njit(cache=True, parallel=True, error_model="numpy", fastmath={"reassoc"})
def bn_forward_train(x, gamma, beta, eps, mean, var, inv_std, out):
    """Training forward with the batch's statistics, eqs. B1-B3, B7.

    x, out (N, C, L); gamma, beta (C,) (ones and zeros for affine=False); eps: a scalar of x's
    dtype. Writes mean, var (the biased variance) and inv_std (C,), and out.
    """
    batch, channels, length = x.shape
    count = batch * length
    for c in numba.prange(channels):
        total = 0.0
        for i in range(batch):
            for k in range(length):
                total += np.float64(x[i, c, k])
        mu = total / count
        squares = 0.0                                   # Σ(x − μ)², exact where Σx² − nμ² cancels
        for i in range(batch):
            for k in range(length):
                d = np.float64(x[i, c, k]) - mu
                squares += d * d
        mean[c] = mu                                    # rounded to the dtype, as the reference's
        var[c] = squares / count
        inv_std[c] = 1 / np.sqrt(var[c] + eps)          # B3 in the dtype (1 is exact in any)
        scale = gamma[c] * inv_std[c]
        shift = beta[c] - mean[c] * scale
        for i in range(batch):
            for k in range(length):
                out[i, c, k] = x[i, c, k] * scale + shift


@numba.njit(cache=True, parallel=True, error_model="numpy", fastmath={"reassoc"})
def bn_backward_train(dy, x, mean, inv_std, gamma, count, dx, dgamma, dbeta):
    """Backward with the batch's statistics, eqs. B8-B11.

    dy, x, dx (N, C, L); mean, inv_std, gamma (C,); count: n = N·L as a scalar of the dtype.
    Writes dgamma = Σ dy·x̂ and dbeta = Σ dy (C,), and dx = a·dy + (b·(x − μ) + c).
    """
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
        dbeta[c] = s
        dgamma[c] = sc                                  # Σ dy·(x − μ), in the dtype, then times ρ
        dgamma[c] = dgamma[c] * inv_std[c]
        a = gamma[c] * inv_std[c]                       # γρ: the direct path
        b = -a * inv_std[c] * dgamma[c] / count         # through σ²
        cc = -a * dbeta[c] / count                      # through μ
        for i in range(batch):
            for k in range(length):
                dx[i, c, k] = dy[i, c, k] * a + ((x[i, c, k] - mu) * b + cc)
