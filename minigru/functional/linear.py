"""Fully connected (affine) layer: out = x Wᵀ + b (docs/derivations.md §L).

Shapes: ``x`` (*, I) with any number of leading dimensions (a batch (N, I),
a sequence (T, N, I), or a single vector (I,)), ``weight`` (O, I) as in
PyTorch, ``bias`` (O,) or None, ``out`` (*, O). The leading dimensions are
flattened into one batch of M = prod(*) rows, so every product is a single
matrix multiplication.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_grad_shape
from ..backend import get_array_module

__all__ = ["linear_forward", "linear_backward", "LinearCache"]


class LinearCache(NamedTuple):
    """What :func:`linear_backward` needs: x viewed as (M, I), the weight (O, I), whether there is a
    bias, and x's leading dimensions (*)."""
    x2: object
    weight: object
    has_bias: bool
    lead_shape: tuple


def _check_linear_args(x, weight, bias):
    xp = get_array_module(x, weight, bias)  # BackendMismatchError when NumPy and CuPy meet
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must have shape (out_features, in_features), got {tuple(weight.shape)}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x must have shape (*, {weight.shape[1]}) to match weight "
                         f"{tuple(weight.shape)}, got {tuple(x.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    for name, a in (("x", x), ("weight", weight), ("bias", bias)):
        if a is not None and np.dtype(a.dtype).kind != "f":
            raise TypeError(f"linear: {name} must be floating point, got dtype {a.dtype}")
    return xp


def linear_forward(x, weight, bias=None):
    """Affine map of the last dimension (eq. L1): ``out = x @ weight.T + bias``.

    Inputs:
    - x: (*, I) input; any leading dimensions (M = their product rows)
    - weight: (O, I), torch's layout
    - bias: (O,) or None

    Returns ``(out, cache)``:
    - out: (*, O)
    - cache: a :class:`LinearCache` ``(x2, weight, has_bias, lead_shape)`` with x2 = x viewed as (M, I)
    """
    xp = _check_linear_args(x, weight, bias)
    lead_shape = tuple(x.shape[:-1])
    x2 = x.reshape(-1, weight.shape[1])           # (M, I): a view when x is contiguous
    out = xp.matmul(x2, weight.T)                 # (M, O), one GEMM for all leading dims
    if bias is not None:
        out += bias                               # broadcast over the M rows
    return out.reshape(*lead_shape, weight.shape[0]), LinearCache(x2, weight, bias is not None, lead_shape)


def linear_backward(dout, cache):
    """Gradients of the affine map (eqs. L2-L4).

    Inputs:
    - dout: (*, O) upstream gradient, the shape of ``out``
    - cache: from :func:`linear_forward`

    Returns ``(dx, dweight, dbias)``:
    - dx: (*, I) = dout @ weight (eq. L2)
    - dweight: (O, I) = doutᵀ @ x summed over all M rows (eq. L3)
    - dbias: (O,) = sum of dout over the M rows (eq. L4), or None without bias
    """
    x2, weight, has_bias, lead_shape = cache.x2, cache.weight, cache.has_bias, cache.lead_shape
    out_features, in_features = weight.shape
    check_grad_shape("linear_backward", "dout", dout, (*lead_shape, out_features))
    xp = get_array_module(dout, weight)
    d2 = dout.reshape(-1, out_features)           # (M, O)
    dx = xp.matmul(d2, weight).reshape(*lead_shape, in_features)
    dweight = xp.matmul(d2.T, x2)                 # (O, I): the sum over rows is inside the GEMM
    dbias = d2.sum(axis=0) if has_bias else None
    return dx, dweight, dbias
