"""Elementwise activations: ReLU, tanh and a numerically stable sigmoid (docs/derivations.md §A).

Shapes: any; ``out`` and ``dx`` have the shape, dtype and backend of ``x``.
"""
from __future__ import annotations

from .._checks import check_grad_shape
from ..backend import get_array_module

__all__ = ["sigmoid", "relu_forward", "relu_backward", "tanh_forward", "tanh_backward",
           "sigmoid_forward", "sigmoid_backward"]


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
