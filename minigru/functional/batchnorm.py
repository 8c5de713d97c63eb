"""Batch normalisation over (N, C, *) inputs, forward and backward (docs/derivations.md §B).

For every channel c, the n = N·L values of x[:, c, ...] (L = product of the
spatial sizes, 1 for (N, C) input) are normalised with their mean μ and
biased variance σ² (eqs. B1-B3), then scaled and shifted (eq. B4)::

    x̂ = (x - μ) / sqrt(σ² + eps),      y = γ x̂ + β

In training, μ and σ² come from the batch and the running statistics are
updated with the *unbiased* variance (eq. B5); in evaluation the running
statistics are used instead (eq. B6).

Shapes: ``x`` (N, C), (N, C, L) or (N, C, H, W) — any (N, C, *); ``gamma``,
``beta``, ``running_mean``, ``running_var`` (C,); ``out`` and ``dx`` the
shape of ``x``.

Why the code looks the way it does (speed on a CPU):

* x is viewed as (N, C·L) rows, and every per-channel vector (C,) is expanded
  once into a (C·L,) row with ``repeat``. NumPy broadcasts such a contiguous
  row about twice as fast as a (1, C, 1) array, whose stride-0 middle axis
  defeats its SIMD loops.
* Per-channel sums are ``einsum("ncl->c")`` and ``einsum("ncl,ncl->c")``,
  which reduce in one vectorised pass without building x*x.
* The elementwise passes run over blocks of rows of about 512 KiB
  (:data:`BLOCK_BYTES`), so temporaries such as x - μ stay in the CPU's L2
  cache and are never allocated at full size; on CuPy the whole batch is one
  block. This is the same arithmetic as one big array, only in pieces.
* The forward pass fuses normalise + affine into ``y = x·(γρ) + (β - μγρ)``
  (ρ = 1/sqrt(σ² + eps), eq. B7), as PyTorch does, and keeps x (not x̂) for
  backward, which recomputes x - μ block by block (no full-size x̂ is stored).
* With the numba engine (:mod:`minigru.engine`) each direction of training mode is one kernel
  that reads every channel once from memory (:mod:`minigru._numba.batchnorm`); the code here
  stays the reference it is tested against.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import engine
from .._checks import check_grad_shape
from ..backend import get_array_module

__all__ = ["batchnorm_forward", "batchnorm_backward", "BatchNormCache"]


class BatchNormCache(NamedTuple):
    """What :func:`batchnorm_backward` needs: x as (N, C·L), the statistics used (C,), gamma (C,) or
    None, whether the statistics were the batch's, and x's shape."""
    x2: object
    mean: object
    inv_std: object
    gamma: object
    batch_stats: bool
    shape: tuple

BLOCK_BYTES = 1 << 19
"""Size of the row blocks of the elementwise passes (NumPy only): small enough for an L2 cache."""


def _row_blocks(xp, n_rows: int, row_bytes: int) -> list:
    """Slices of rows covering ``range(n_rows)``, about ``BLOCK_BYTES`` each (one slice on CuPy)."""
    if xp is not np:
        return [slice(0, n_rows)]
    rows = max(1, BLOCK_BYTES // max(1, row_bytes))
    return [slice(start, min(n_rows, start + rows)) for start in range(0, n_rows, rows)]


def _check_batchnorm_args(x, gamma, beta, running_mean, running_var):
    xp = get_array_module(x, gamma, beta, running_mean, running_var)
    if x.ndim < 2:
        raise ValueError(f"batchnorm: x must have shape (N, C, *), got {tuple(x.shape)}")
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(f"batchnorm: x must be floating point, got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"batchnorm: x is empty, shape {tuple(x.shape)}")
    channels = x.shape[1]
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        if v is not None and tuple(v.shape) != (channels,):
            raise ValueError(f"batchnorm: {name} must have shape ({channels},) for the {channels} channels "
                             f"of x {tuple(x.shape)}, got {tuple(v.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batchnorm: pass both running_mean and running_var, or neither")
    return xp


def _layout(shape):
    """(N, C, L, n): batch, channels, values per channel and sample, values per channel."""
    N, C = shape[0], shape[1]
    L = int(np.prod(shape[2:], dtype=np.int64))
    return N, C, L, N * L


def _sum_squared_deviations(xp, x2, mean_row, C, L, blocks):
    """Σ (x - μ)² per channel (the numerator of eq. B2), one cache-sized block of rows at a time."""
    total = xp.zeros(C, dtype=x2.dtype)
    work = xp.empty((blocks[0].stop - blocks[0].start, C * L), dtype=x2.dtype)
    for rows in blocks:
        k = rows.stop - rows.start
        centred = xp.subtract(x2[rows], mean_row, out=work[:k]).reshape(k, C, L)
        total += xp.einsum("ncl,ncl->c", centred, centred)
    return total


def _scale_and_shift(xp, x2, scale_row, shift_row, blocks):
    """``x2 * scale_row + shift_row`` into a new (N, C·L) array, block by block (eq. B7)."""
    out = xp.empty_like(x2)
    for rows in blocks:
        block = xp.multiply(x2[rows], scale_row, out=out[rows])
        block += shift_row
    return out


def batchnorm_forward(x, gamma, beta, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5):
    """Batch normalisation (eqs. B1-B7).

    Inputs:
    - x: (N, C, *) input: (N, C), (N, C, L) or (N, C, H, W)
    - gamma: (C,) scale γ (torch's ``weight``), or None for γ = 1
    - beta: (C,) shift β (torch's ``bias``), or None for β = 0
    - running_mean, running_var: (C,) running statistics, or None (both). With
      ``training`` they are UPDATED IN PLACE (eq. B5), as torch's
      ``F.batch_norm`` does; without it they normalise x (eq. B6).
    - training: True normalises with the batch's statistics; False with the
      running ones (which must then be given)
    - momentum: weight of the new batch in the running update, a number in
      [0, 1] (the layer turns torch's ``momentum=None`` into 1/t)
    - eps: added to the variance for stability

    Returns ``(out, cache)``:
    - out: shape of x
    - cache: a :class:`BatchNormCache` ``(x2, mean, inv_std, gamma, batch_stats, shape)``: x as (N, C·L),
      the statistics used (C,) and whether they were the batch's. x2 is a view
      of x, not a copy: do not modify x in place before the backward pass.

    Raises ValueError for a batch with a single value per channel in training
    (its variance is 0 and its unbiased variance undefined), as torch does.
    """
    xp = _check_batchnorm_args(x, gamma, beta, running_mean, running_var)
    N, C, L, n = _layout(x.shape)
    x2 = x.reshape(N, C * L)                      # a view for contiguous x
    blocks = _row_blocks(xp, N, C * L * x.itemsize)
    out = None
    if training:
        if n == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
        fused = engine.kernels_for(x2, gamma, beta)
        if fused is not None:   # the numba engine (minigru.engine): eqs. B1-B3, B7 in one kernel
            mean, var, inv_std, out = _fused_forward(xp, fused, x2, gamma, beta, eps, (N, C, L))
        else:
            mean = xp.einsum("ncl->c", x2.reshape(N, C, L)) / n                                   # eq. B1
            var = _sum_squared_deviations(xp, x2, xp.repeat(mean, L), C, L, blocks) / n           # eq. B2
        if running_mean is not None:                                                             # eq. B5
            running_mean *= 1.0 - momentum
            running_mean += momentum * mean
            running_var *= 1.0 - momentum
            running_var += momentum * (var * (n / (n - 1)))   # unbiased variance n/(n-1) σ²
    else:
        if running_mean is None:
            raise ValueError("batchnorm: evaluation (training=False) needs running_mean and running_var")
        mean = running_mean.astype(x.dtype)   # copies (eq. B6): the buffers may change before backward
        var = running_var.astype(x.dtype)
    if out is None:
        inv_std = 1.0 / xp.sqrt(var + eps)                                                       # eq. B3
        scale = inv_std if gamma is None else gamma * inv_std
        shift = -mean * scale if beta is None else beta - mean * scale
        out = _scale_and_shift(xp, x2, xp.repeat(scale, L), xp.repeat(shift, L), blocks)         # eqs. B4, B7
    return out.reshape(x.shape), BatchNormCache(x2, mean, inv_std, gamma, bool(training), tuple(x.shape))


def _fused_forward(xp, fused, x2, gamma, beta, eps, layout):
    """The numba engine's training forward: (mean, var, inv_std) (C,) and out (N, C·L), as
    :func:`batchnorm_forward` computes them (``gamma``/``beta`` None act as ones/zeros, exactly)."""
    N, C, L = layout
    dtype = x2.dtype
    gamma = xp.ones(C, dtype) if gamma is None else gamma
    beta = xp.zeros(C, dtype) if beta is None else beta
    mean, var, inv_std = xp.empty(C, dtype), xp.empty(C, dtype), xp.empty(C, dtype)
    out = xp.empty_like(x2)
    fused.bn_forward_train(x2.reshape(N, C, L), gamma, beta, dtype.type(eps), mean, var, inv_std,
                           out.reshape(N, C, L))
    return mean, var, inv_std, out


def _channel_sums(xp, d2, x2, mean_row, C, L, blocks):
    """Per channel: Σ dy and Σ dy·(x - μ) (eq. B8), in one pass over dy and x."""
    sum_dy = xp.zeros(C, dtype=d2.dtype)
    sum_dy_centred = xp.zeros(C, dtype=d2.dtype)
    work = xp.empty((blocks[0].stop - blocks[0].start, C * L), dtype=x2.dtype)
    for rows in blocks:
        k = rows.stop - rows.start
        dy = d2[rows].reshape(k, C, L)
        centred = xp.subtract(x2[rows], mean_row, out=work[:k]).reshape(k, C, L)
        sum_dy += xp.einsum("ncl->c", dy)
        sum_dy_centred += xp.einsum("ncl,ncl->c", dy, centred)
    return sum_dy, sum_dy_centred


def _combine(xp, d2, x2, mean_row, a_row, b_row, c_row, blocks):
    """``dx = a·dy + b·(x - μ) + c`` (eq. B11) into a new (N, C·L) array, block by block."""
    dx = xp.empty_like(d2)
    work = xp.empty((blocks[0].stop - blocks[0].start, d2.shape[1]), dtype=d2.dtype)
    for rows in blocks:
        k = rows.stop - rows.start
        term = xp.subtract(x2[rows], mean_row, out=work[:k])
        term *= b_row
        term += c_row
        block = xp.multiply(d2[rows], a_row, out=dx[rows])
        block += term
    return dx


def batchnorm_backward(dout, cache):
    """Gradients of batch normalisation (eqs. B8-B12).

    Inputs:
    - dout: upstream gradient dy, the shape of x
    - cache: from :func:`batchnorm_forward`

    Returns ``(dx, dgamma, dbeta)``:
    - dx: shape of x. With batch statistics, the compact formula (eq. B10)
      ``dx = (γρ/n) (n·dy - Σdy - x̂ Σ(dy·x̂))`` per channel, evaluated as
      ``a·dy + b·(x - μ) + c`` (eq. B11); with running statistics the
      statistics are constants and ``dx = γρ·dy`` (eq. B12)
    - dgamma: (C,) = Σ dy·x̂, or None when gamma was None
    - dbeta: (C,) = Σ dy, or None when gamma was None (affine=False)
    """
    check_grad_shape("batchnorm_backward", "dout", dout, cache.shape)
    x2, mean, inv_std, gamma, batch_stats, shape = cache
    xp = get_array_module(dout, x2)
    N, C, L, n = _layout(shape)
    affine = gamma is not None
    if not affine:
        gamma = xp.ones(C, dtype=x2.dtype)
    d2 = dout.reshape(N, C * L)
    fused = engine.kernels_for(d2, x2, mean, inv_std, gamma) if batch_stats else None
    if fused is not None:       # the numba engine (minigru.engine): eqs. B8-B11 in one kernel
        dx, dgamma, dbeta = xp.empty_like(d2), xp.empty(C, d2.dtype), xp.empty(C, d2.dtype)
        fused.bn_backward_train(d2.reshape(N, C, L), x2.reshape(N, C, L), mean, inv_std, gamma, d2.dtype.type(n),
                                dx.reshape(N, C, L), dgamma, dbeta)
        return (dx.reshape(shape), dgamma, dbeta) if affine else (dx.reshape(shape), None, None)
    blocks = _row_blocks(xp, N, C * L * x2.itemsize)
    mean_row = xp.repeat(mean, L)
    sum_dy, sum_dy_centred = _channel_sums(xp, d2, x2, mean_row, C, L, blocks)
    if batch_stats:
        ### HINT: with ρ = inv_std and x̂ = (x - μ)ρ, eqs. (B8)-(B11) of docs/derivations.md give
        ### HINT: dβ = Σdy, dγ = Σ dy·x̂ and dx = a·dy + b·(x - μ) + c per channel (each (C,)).
        ### HINT: You have sum_dy = Σdy and sum_dy_centred = Σ dy·(x - μ). Name the results dbeta, dgamma, a, b, c.
        ### BEGIN SOLUTION
        dbeta = sum_dy
        dgamma = sum_dy_centred * inv_std          # Σ dy·x̂
        a = gamma * inv_std                        # γρ: the direct path x -> x̂ -> y
        b = -a * inv_std * dgamma / n              # through σ²: -(γρ/n)·x̂·dγ, with x̂ = (x - μ)ρ
        c = -a * dbeta / n                         # through μ: -(γρ/n)·Σdy
        ### END SOLUTION
        dx = _combine(xp, d2, x2, mean_row, xp.repeat(a, L), xp.repeat(b, L), xp.repeat(c, L), blocks)
    else:
        dbeta = sum_dy
        dgamma = sum_dy_centred * inv_std
        dx = d2 * xp.repeat(gamma * inv_std, L)                                                  # eq. B12
    if not affine:
        dgamma = dbeta = None
    return dx.reshape(shape), dgamma, dbeta
