"""Elementwise activations: ReLU, tanh, a numerically stable sigmoid and GELU (docs/derivations.md §A).

Shapes: any; ``out`` and ``dx`` have the shape, dtype and backend of ``x``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from .._checks import check_grad_shape
from ..backend import erf, get_array_module

__all__ = ["sigmoid", "relu_forward", "relu_backward", "tanh_forward", "tanh_backward",
           "sigmoid_forward", "sigmoid_backward", "gelu_forward", "gelu_backward", "GELUCache",
           "GELU_APPROXIMATIONS", "check_gelu_approximate"]

GELU_APPROXIMATIONS = ("none", "tanh")
"""GELU's two forms, PyTorch's names: the exact ``x Φ(x)`` (eq. A4) and its tanh approximation (eq. A5)."""

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715               # the tanh form's cubic coefficient (Hendrycks and Gimpel; PyTorch's)


def sigmoid(x, out=None):
    """σ(x) = 1 / (1 + e^{-x}), computed as ½(1 + tanh(x/2)) (eq. A3).

    The tanh form never overflows (``exp(-x)`` does for x < -88 in float32)
    and costs one transcendental; ``out`` may be ``x`` itself to work in place.
    """
    xp = get_array_module(x)
    out = xp.multiply(x, 0.5, out=out)
    xp.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


def relu_forward(x):
    """ReLU: out = max(x, 0) (eq. A1). Returns ``(out, cache)``; the cache is ``out``."""
    xp = get_array_module(x)
    out = xp.maximum(x, 0)
    return out, out


def relu_backward(dout, cache):
    """dx = dout · [x > 0] (eq. A1'), using ``out > 0`` which is the same set.

    A product with the boolean mask is faster in NumPy than ``where(mask, dout, 0)``
    (docs/performance.md); the only difference is that a NaN or inf in ``dout``
    where x <= 0 gives NaN instead of 0 (training has diverged then anyway).
    """
    check_grad_shape("relu_backward", "dout", dout, cache.shape)
    xp = get_array_module(dout, cache)
    return xp.multiply(dout, cache > 0)


def tanh_forward(x):
    """out = tanh(x) (eq. A2). Returns ``(out, cache)``; the cache is ``out``."""
    xp = get_array_module(x)
    out = xp.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """dx = dout · (1 - tanh²x) (eq. A2')."""
    check_grad_shape("tanh_backward", "dout", dout, cache.shape)
    return dout * (1 - cache * cache)


def sigmoid_forward(x):
    """out = σ(x) (eq. A3). Returns ``(out, cache)``; the cache is ``out``."""
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout, cache):
    """dx = dout · σ(x)(1 - σ(x)) (eq. A3')."""
    check_grad_shape("sigmoid_backward", "dout", dout, cache.shape)
    return dout * cache * (1 - cache)


class GELUCache(NamedTuple):
    """What :func:`gelu_backward` needs: the input ``x``, ``cdf`` = Φ(x) (or its tanh form) and the form."""
    x: object
    cdf: object
    approximate: str


def gelu_forward(x, approximate: str = "none"):
    """GELU: out = x · Φ(x), Φ the standard normal distribution function. Returns ``(out, cache)``.

    ``approximate="none"``: Φ(x) = ½(1 + erf(x/√2)) (eq. A4), exact; NumPy has no erf, so it is computed
    element by element (:func:`minigru.backend.erf`), which is slow. ``"tanh"``:
    Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715 x³))) (eq. A5), within 4.7e-4 of the exact GELU's value (at x ≈ ±2.7)
    and a few ufunc passes: the form to train with. Both are PyTorch's ``GELU(approximate=...)``.
    """
    check_gelu_approximate(approximate)
    xp = get_array_module(x)
    if approximate == "none":
        cdf = erf(x * x.dtype.type(1 / math.sqrt(2.0)))
    else:
        cdf = xp.multiply(x, x)                         # √(2/π)(x + c x³) = √(2/π) x (1 + c x²), in place
        cdf *= _GELU_CUBIC
        cdf += 1
        cdf *= x
        cdf *= _SQRT_2_OVER_PI
        xp.tanh(cdf, out=cdf)
    cdf += 1
    cdf *= 0.5
    return x * cdf, GELUCache(x, cdf, approximate)


def gelu_backward(dout, cache: GELUCache):
    """dx = dout · (Φ(x) + x φ(x)), φ = Φ' the normal density (eq. A4'); for the tanh form, with
    Φ̃ = ½(1 + t): dx = dout · (Φ̃ + 2x Φ̃(1 − Φ̃) √(2/π)(1 + 3 · 0.044715 x²)) (eq. A5')."""
    check_grad_shape("gelu_backward", "dout", dout, cache.x.shape)
    xp = get_array_module(dout, cache.x)
    x, cdf = cache.x, cache.cdf
    if cache.approximate == "none":
        slope = xp.multiply(x, x)                       # x φ(x) = x e^{-x²/2} / √(2π)
        slope *= -0.5
        xp.exp(slope, out=slope)
        slope *= x
        slope *= 1 / math.sqrt(2 * math.pi)
    else:
        slope = xp.multiply(x, x)                       # 2x Φ̃(1 - Φ̃) √(2/π)(1 + 3c x²): 1 - t² = 4Φ̃(1 - Φ̃)
        slope *= 3 * _GELU_CUBIC
        slope += 1
        slope *= 2 * _SQRT_2_OVER_PI
        slope *= x
        slope *= cdf
        slope *= 1 - cdf
    slope += cdf
    slope *= dout
    return slope


def check_gelu_approximate(approximate) -> None:
    """A ValueError naming the choices unless ``approximate`` is ``"none"`` or ``"tanh"``."""
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"GELU: approximate must be 'none' or 'tanh' (PyTorch's names), got {approximate!r}")
