"""Inverted dropout (docs/derivations.md §D).

During training every element is kept with probability ``1 - p`` and the kept
ones are scaled by ``1 / (1 - p)`` (eq. D1), so the expected output equals the
input (eq. D2) and evaluation needs no rescaling: there dropout is the identity.

Shapes: any; ``out``, ``mask`` and ``dx`` have the shape of ``x``.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from .._checks import check_grad_shape
from ..backend import get_array_module

__all__ = ["dropout_forward", "dropout_backward", "check_dropout_probability"]


def check_dropout_probability(p) -> float:
    """Return ``p`` as a float; ValueError (with torch's wording) unless 0 <= p <= 1."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return float(p)


def dropout_forward(x, p, mask_or_rng=None, training=True):
    """Inverted dropout (eq. D1): ``out = x * keep / (1 - p)``.

    Inputs:
    - x: any shape, floating point
    - p: probability of dropping an element, 0 <= p <= 1
    - mask_or_rng: where the keep mask comes from:
        * a ``numpy.random.Generator`` or an int seed: draw ``u ~ U[0, 1)`` on the
          host (so NumPy and CuPy get the same mask) and keep where ``u >= p``;
        * an array of x's shape (bool or 0/1 values): this exact keep mask,
          e.g. to test against a hand computation;
        * None: fresh entropy.
    - training: False makes dropout the identity (``out`` is ``x`` itself)

    Returns ``(out, cache)``:
    - out: shape of x
    - cache: the scaled mask ``keep / (1 - p)`` (shape of x, dtype of x), or
      None when dropout is the identity (eval mode or p = 0)

    p = 1 drops everything: ``out`` is zeros and so is the gradient, as in torch.
    """
    p = check_dropout_probability(p)
    xp = get_array_module(x)
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(f"dropout: x must be floating point, got dtype {x.dtype}")
    if not training or p == 0.0:
        return x, None
    if backend.is_array(mask_or_rng):
        keep = mask_or_rng
        if tuple(keep.shape) != tuple(x.shape):
            raise ValueError(f"dropout: mask must have the shape of x {tuple(x.shape)}, got {tuple(keep.shape)}")
        get_array_module(x, keep)  # the mask must live on x's backend
        if keep.dtype != bool and not bool(xp.all((keep == 0) | (keep == 1))):
            raise ValueError("dropout: a given mask must hold only 0/1 (or bool) values: "
                             "it says which elements to keep")
    else:
        u = backend.random_uniform(backend.make_rng(mask_or_rng), x.shape, dtype=x.dtype, like=x)
        keep = u >= p                       # P(keep) = 1 - p (eq. D1)
    # p = 1 keeps nothing; the scale is then irrelevant and 0 avoids dividing by zero.
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    mask = xp.multiply(keep, scale, dtype=x.dtype)
    return x * mask, mask


def dropout_backward(dout, cache):
    """Gradient of inverted dropout (eq. D3): ``dx = dout * mask``.

    Inputs:
    - dout: upstream gradient, shape of x
    - cache: from :func:`dropout_forward` (None means identity)

    Returns dx, shape of x (``dout`` itself when dropout was the identity).
    """
    if cache is None:
        return dout
    check_grad_shape("dropout_backward", "dout", dout, cache.shape)
    return dout * cache
