"""Pooling with explicit loops: the oracle the fast kernels of :mod:`minigru.functional.pooling` are tested against.

One window at a time, straight from the definitions of docs/derivations.md
§P: a maximum (eqs. P1, P2) or a mean (eqs. P3, P4) over the window
``xpad[n, c, a*sh : a*sh + kh, b*sw : b*sw + kw]``. Slow (Python loops over
every output pixel), but each line can be checked by hand.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from .conv import conv_geometry

__all__ = ["maxpool2d_naive_forward", "maxpool2d_naive_backward", "avgpool2d_naive_forward",
           "avgpool2d_naive_backward"]


def _padded(x, pads, fill):
    xp = get_array_module(x)
    top, bottom, left, right = pads
    return xp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)


def _windows(g, N, C):
    """Every (n, c, a, b) with the slices (rows, cols) of its window in the padded image."""
    for n in range(N):
        for c in range(C):
            for a in range(g.Ho):
                for b in range(g.Wo):
                    yield n, c, a, b, slice(a * g.sh, a * g.sh + g.kh), slice(b * g.sw, b * g.sw + g.kw)


def _unpad(dxpad, g):
    top, _, left, _ = g.pads
    return dxpad[:, :, top:top + g.H, left:left + g.W].copy()


def maxpool2d_naive_forward(x, kernel_size, stride=None, padding=0):
    """out[n, c, a, b] = max of the window, padding -inf (eq. P1). x (N, C, H, W) -> out (N, C, Ho, Wo).

    Returns (out, cache (xpad, geometry)).
    """
    xp = get_array_module(x)
    g = conv_geometry(x.shape, kernel_size, kernel_size if stride is None else stride, padding)
    N, C = x.shape[:2]
    xpad = _padded(x, g.pads, -np.inf)
    out = xp.empty((N, C, g.Ho, g.Wo), dtype=x.dtype)
    for n, c, a, b, rows, cols in _windows(g, N, C):
        out[n, c, a, b] = xpad[n, c, rows, cols].max()
    return out, (xpad, g)


def maxpool2d_naive_backward(dout, cache):
    """dx: each window's gradient to its first maximum in row-major order (torch's rule, eq. P2)."""
    xpad, g = cache
    xp = get_array_module(dout, xpad)
    dxpad = xp.zeros_like(xpad)
    for n, c, a, b, rows, cols in _windows(g, *xpad.shape[:2]):
        t = int(xpad[n, c, rows, cols].argmax())   # argmax returns the first maximum (row-major)
        dxpad[n, c, a * g.sh + t // g.kw, b * g.sw + t % g.kw] += dout[n, c, a, b]
    return _unpad(dxpad, g)


def avgpool2d_naive_forward(x, kernel_size, stride=None, padding=0):
    """out[n, c, a, b] = mean of the window, zero padding counted (eq. P3). Returns (out, cache)."""
    xp = get_array_module(x)
    g = conv_geometry(x.shape, kernel_size, kernel_size if stride is None else stride, padding)
    N, C = x.shape[:2]
    xpad = _padded(x, g.pads, 0)
    out = xp.empty((N, C, g.Ho, g.Wo), dtype=x.dtype)
    for n, c, a, b, rows, cols in _windows(g, N, C):
        out[n, c, a, b] = xpad[n, c, rows, cols].sum() / (g.kh * g.kw)
    return out, (xpad.shape, g)


def avgpool2d_naive_backward(dout, cache):
    """dx: every pixel of a window gets dout / (kh*kw) (eq. P4)."""
    xpad_shape, g = cache
    xp = get_array_module(dout)
    dxpad = xp.zeros(xpad_shape, dtype=dout.dtype)
    for n, c, a, b, rows, cols in _windows(g, *xpad_shape[:2]):
        dxpad[n, c, rows, cols] += dout[n, c, a, b] / (g.kh * g.kw)
    return _unpad(dxpad, g)
