"""Convolution with explicit loops: the teaching version, and the oracle the fast kernel is tested against.

Every output pixel is one dot product between a filter and the window under
it (docs/derivations.md eq. C1). It is slow (four nested Python loops) but
each line can be checked by hand; :mod:`minigru.functional.conv` computes
the same numbers with one matrix product.
"""
from __future__ import annotations

from typing import NamedTuple

from .._checks import check_grad_shape
from ..backend import get_array_module
from .conv import _check_conv_inputs, conv_geometry

__all__ = ["conv2d_naive_forward", "conv2d_naive_backward", "ConvNaiveCache"]


class ConvNaiveCache(NamedTuple):
    """What :func:`conv2d_naive_backward` needs: the padded input, the weight, whether there is a bias,
    and the geometry (sizes, stride, pads)."""
    xpad: object
    weight: object
    has_bias: bool
    geometry: object


def _pad(x, pads):
    xp = get_array_module(x)
    top, bottom, left, right = pads
    return xp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def conv2d_naive_forward(x, weight, bias, stride=1, padding=0):
    """out[n, k, a, b] = sum_{c,i,j} w[k, c, i, j] * xpad[n, c, a*sh + i, b*sw + j] + bias[k] (eq. C1).

    Inputs: x (N, C, H, W), weight (K, C, kh, kw), bias (K,) or None, stride and
    padding as in :func:`~minigru.functional.conv.conv2d_forward`.
    Returns (out (N, K, Ho, Wo), cache), a :class:`ConvNaiveCache`.
    """
    xp = _check_conv_inputs(x, weight, bias)
    N = x.shape[0]
    K, C, kh, kw = weight.shape
    g = conv_geometry(x.shape, (kh, kw), stride, padding)
    xpad = _pad(x, g.pads)
    out = xp.zeros((N, K, g.Ho, g.Wo), dtype=x.dtype)
    ### HINT: loop over n, k, a, b; the window is xpad[n, :, a*g.sh : a*g.sh + kh, b*g.sw : b*g.sw + kw].
    ### HINT: out[n, k, a, b] = sum(window * weight[k]) + bias[k] (no bias if bias is None). Fill `out`.
    ### BEGIN SOLUTION
    for n in range(N):
        for k in range(K):
            for a in range(g.Ho):
                for b in range(g.Wo):
                    window = xpad[n, :, a * g.sh:a * g.sh + kh, b * g.sw:b * g.sw + kw]
                    out[n, k, a, b] = (window * weight[k]).sum()
            if bias is not None:
                out[n, k] += bias[k]
    ### END SOLUTION
    return out, ConvNaiveCache(xpad, weight, bias is not None, g)


def conv2d_naive_backward(dout, cache):
    """Gradients of :func:`conv2d_naive_forward`, one window at a time (eqs. C6, C7, C10).

    Each output pixel out[n, k, a, b] used the window xpad[n, :, a*sh:a*sh+kh, b*sw:b*sw+kw]
    and filter w[k], so dout[n, k, a, b] flows back to both:
    dw[k] += dout * window, dxpad[window] += dout * w[k], db[k] += dout.

    Input: dout (N, K, Ho, Wo). Returns (dx (N, C, H, W), dweight (K, C, kh, kw), dbias (K,) or None).
    """
    xpad, weight, has_bias, g = cache.xpad, cache.weight, cache.has_bias, cache.geometry
    xp = get_array_module(dout, xpad)
    N = xpad.shape[0]
    K, C, kh, kw = weight.shape
    check_grad_shape("conv2d_naive_backward", "dout", dout, (N, K, g.Ho, g.Wo))
    dxpad = xp.zeros_like(xpad)
    dweight = xp.zeros_like(weight)
    dbias = xp.zeros(K, dtype=weight.dtype) if has_bias else None
    ### HINT: same four loops as the forward pass; for each (n, k, a, b) with grad = dout[n, k, a, b]:
    ### HINT: dweight[k] += grad * window, dxpad[n, :, <window>] += grad * weight[k], dbias[k] += grad.
    ### BEGIN SOLUTION
    for n in range(N):
        for k in range(K):
            for a in range(g.Ho):
                for b in range(g.Wo):
                    rows = slice(a * g.sh, a * g.sh + kh)
                    cols = slice(b * g.sw, b * g.sw + kw)
                    grad = dout[n, k, a, b]
                    dweight[k] += grad * xpad[n, :, rows, cols]
                    dxpad[n, :, rows, cols] += grad * weight[k]
                    if has_bias:
                        dbias[k] += grad
    ### END SOLUTION
    top, _, left, _ = g.pads
    dx = dxpad[:, :, top:top + g.H, left:left + g.W].copy()
    return dx, dweight, dbias
