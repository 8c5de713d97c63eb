"""Max, average and adaptive-average pooling over (N, C, H, W) images (docs/derivations.md §P, eqs. P1-P7).

The kernels loop over the kh*kw offsets of the pooling window, never over
pixels: for offset (i, j), ``xpad[:, :, i::sh, j::sw]`` (cut to Ho x Wo) holds
that offset's pixel of every window at once, so a window reduction is kh*kw
elementwise operations on strided views. (A reshape to a 6-D view and a max
over two axes is shorter but works only for stride == kernel and was 3x
slower here.)

Semantics follow torch: ``stride`` defaults to ``kernel_size``; padding is at
most half the kernel; max pooling pads with -inf and sends the gradient of a
window to its first maximum in row-major order (torch's tie rule); average
pooling pads with zeros that count in the divisor (``count_include_pad=True``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_grad_shape
from ..backend import get_array_module
from . import _workspace
from .conv import conv_geometry, padded_input, window_view

__all__ = ["maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward",
           "adaptive_avgpool2d_forward", "adaptive_avgpool2d_backward", "MaxPoolCache", "AvgPoolCache",
           "GlobalAvgPoolCache", "AdaptiveAvgPoolCache"]


class MaxPoolCache(NamedTuple):
    """What :func:`maxpool2d_backward` needs: each window's argmax offset (N, C, Ho, Wo) (-1: no
    gradient, see ``relu``), x's shape and the window geometry."""
    argmax: object
    x_shape: tuple
    geometry: object


class AvgPoolCache(NamedTuple):
    """What :func:`avgpool2d_backward` needs: x's shape and the window geometry."""
    x_shape: tuple
    geometry: object


class GlobalAvgPoolCache(NamedTuple):
    """What :func:`adaptive_avgpool2d_backward` needs after a global average (output size 1): x's shape."""
    x_shape: tuple


class AdaptiveAvgPoolCache(NamedTuple):
    """What :func:`adaptive_avgpool2d_backward` needs after uneven adaptive windows: the averaging
    matrices A_h (Ho, H) and A_w (Wo, W), and x's shape."""
    rows: object
    cols: object
    x_shape: tuple


def _pool_geometry(name, x, kernel_size, stride, padding):
    if x.ndim != 4:
        raise ValueError(f"{name} expects x of shape (N, C, H, W), got {tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name} needs a floating-point x, got {x.dtype}")
    if isinstance(padding, str):
        raise ValueError(f"{name}: padding must be an int or a pair (h, w), got {padding!r}")
    g = conv_geometry(x.shape, kernel_size, kernel_size if stride is None else stride, padding)
    top, _, left, _ = g.pads
    if 2 * top > g.kh or 2 * left > g.kw:
        raise ValueError(f"{name}: padding should be at most half of the kernel size (as in torch), got "
                         f"padding=({top}, {left}) and kernel_size=({g.kh}, {g.kw})")
    return g


def _offset_slice(a, g, i, j):
    """The (.., Ho, Wo) strided view of ``a`` (..., Hp, Wp) holding kernel offset (i, j) of every window."""
    return a[..., i:i + g.sh * (g.Ho - 1) + 1:g.sh, j:j + g.sw * (g.Wo - 1) + 1:g.sw]


def _zeroed_gradient_buffer(tag, x_shape, g, like):
    """Zeros of the padded shape (N, C, Hp, Wp): a reused work buffer when padded (the result
    is cropped into a new array), else a new array that becomes dx itself."""
    if not any(g.pads):
        return get_array_module(like).zeros(x_shape, dtype=like.dtype)
    buf = _workspace.scratch(tag, (*x_shape[:2], g.Hp, g.Wp), like)
    buf.fill(0)
    return buf


def _unpad(dxpad, g):
    """dx (N, C, H, W): a new array without the padding (or dxpad itself when there is none)."""
    if not any(g.pads):
        return dxpad
    top, _, left, _ = g.pads
    return dxpad[:, :, top:top + g.H, left:left + g.W].copy()


# ------------------------------------------------------------------ max
def maxpool2d_forward(x, kernel_size, stride=None, padding=0, relu=False):
    """out[n, c, a, b] = max_{i,j} xpad[n, c, a*sh + i, b*sw + j], xpad padded with -inf (eq. P1).

    Inputs: x (N, C, H, W); kernel_size, stride (default kernel_size) and
    padding (<= kernel/2): ints or (h, w) pairs. ``relu=True`` returns
    max(out, 0): the same as max-pooling ReLU(x), since ReLU is increasing
    (docs/performance.md, "ReLU and max-pooling commute"), but the ReLU runs
    on the pooled output, kh*kw times smaller.
    Returns (out (N, C, Ho, Wo), cache (argmax (N, C, Ho, Wo), x.shape, geometry)),
    where argmax = i*kw + j is the window offset of the first maximum (int8 for
    windows of up to 127 pixels), or -1 where ``relu`` zeroed the output (no gradient).
    """
    xp = get_array_module(x)
    g = _pool_geometry("maxpool2d", x, kernel_size, stride, padding)
    N, C = x.shape[:2]
    windows = window_view(padded_input(x, g, fill=-np.inf), g)   # (N, C, kh, kw, Ho, Wo), a view
    index_dtype = np.int8 if g.kh * g.kw <= 127 else np.int32
    best = windows[:, :, 0, 0]                                    # running maximum (N, C, Ho, Wo)
    best_at = xp.zeros((N, C, g.Ho, g.Wo), dtype=index_dtype)     # its offset t = i*kw + j
    is_larger = xp.empty(best_at.shape, dtype=bool)
    out = xp.empty(best_at.shape, dtype=x.dtype)
    for t in range(1, g.kh * g.kw):
        candidate = windows[:, :, t // g.kw, t % g.kw]
        # strictly greater: on ties the earlier offset keeps the gradient, as in torch
        xp.greater(candidate, best, out=is_larger)
        best = xp.maximum(best, candidate, out=out)
        # t only grows, so "best_at = t where is_larger" is a maximum: branch-free, 10x faster
        # than copyto(..., where=is_larger) on random masks
        xp.maximum(best_at, is_larger * index_dtype(t), out=best_at)
    if best is not out:  # a 1x1 window
        out[...] = best
    if relu:
        # ReLU'(max) = 0 where max <= 0: point those windows at no offset (-1), so that backward
        # sends them no gradient, exactly as ReLU's backward would. Branch-free:
        # best_at = (best_at + 1) * [out > 0] - 1.
        positive = xp.greater(out, 0, out=is_larger)
        best_at += 1
        best_at *= positive
        best_at -= 1
        xp.maximum(out, 0, out=out)
    return out, MaxPoolCache(best_at, tuple(x.shape), g)


def maxpool2d_backward(dout, cache):
    """dx: each window's gradient goes to its maximum (eq. P2).

    Input: dout (N, C, Ho, Wo). Returns dx (N, C, H, W). One strided add per
    window offset t = i*kw + j: dxpad[offset (i, j) of every window] += dout * [argmax == t].
    A window whose argmax is -1 (zeroed by ``relu=True`` in the forward pass) matches no
    offset and sends no gradient.
    """
    argmax, x_shape, g = cache
    check_grad_shape("maxpool2d_backward", "dout", dout, argmax.shape)
    xp = get_array_module(dout, argmax)
    dxpad = _zeroed_gradient_buffer("maxpool_dx", x_shape, g, dout)   # (N, C, Hp, Wp)
    overlapping = g.sh < g.kh or g.sw < g.kw
    ### HINT: for each offset t = i*g.kw + j of the window, add dout * (argmax == t) into the strided
    ### HINT: view _offset_slice(dxpad, g, i, j) (overlapping windows add up). dxpad starts at zero.
    ### BEGIN SOLUTION
    for t in range(g.kh * g.kw):
        target = _offset_slice(dxpad, g, t // g.kw, t % g.kw)
        if overlapping:  # a pixel can be the maximum of several windows: add
            xp.add(target, dout * (argmax == t), out=target)
        else:            # every pixel is in one window at most: writing is enough, and 1.7x faster
            xp.multiply(dout, argmax == t, out=target)
    ### END SOLUTION
    return _unpad(dxpad, g)


# -------------------------------------------------------------- average
def avgpool2d_forward(x, kernel_size, stride=None, padding=0):
    """out[n, c, a, b] = (1 / (kh*kw)) sum_{i,j} xpad[n, c, a*sh + i, b*sw + j], zero padding (eq. P3).

    Padded zeros count in the divisor (torch's ``count_include_pad=True``).
    Inputs as :func:`maxpool2d_forward`. Returns (out (N, C, Ho, Wo), cache (x.shape, geometry)).
    """
    xp = get_array_module(x)
    g = _pool_geometry("avgpool2d", x, kernel_size, stride, padding)
    N, C = x.shape[:2]
    windows = window_view(padded_input(x, g), g)   # (N, C, kh, kw, Ho, Wo), a view
    total = windows[:, :, 0, 0].copy()            # (N, C, Ho, Wo)
    for t in range(1, g.kh * g.kw):
        xp.add(total, windows[:, :, t // g.kw, t % g.kw], out=total)
    total /= g.kh * g.kw
    return total, AvgPoolCache(tuple(x.shape), g)


def avgpool2d_backward(dout, cache):
    """dx: every pixel of a window receives dout / (kh*kw) (eq. P4). dout (N, C, Ho, Wo) -> dx (N, C, H, W)."""
    x_shape, g = cache
    xp = get_array_module(dout)
    N, C = x_shape[:2]
    check_grad_shape("avgpool2d_backward", "dout", dout, (N, C, g.Ho, g.Wo))
    share = dout / (g.kh * g.kw)
    dxpad = _zeroed_gradient_buffer("avgpool_dx", x_shape, g, dout)   # (N, C, Hp, Wp)
    for t in range(g.kh * g.kw):
        target = _offset_slice(dxpad, g, t // g.kw, t % g.kw)
        xp.add(target, share, out=target)
    return _unpad(dxpad, g)


# ----------------------------------------------------- adaptive average
def _adaptive_size(x, output_size):
    """(Ho, Wo) from an int, a pair, or None entries (keep that input size), as torch."""
    if x.ndim != 4:
        raise ValueError(f"adaptive_avgpool2d expects x of shape (N, C, H, W), got {tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"adaptive_avgpool2d needs a floating-point x, got {x.dtype}")
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"output_size must be an int or a pair (h, w), got {output_size!r}")
        oh, ow = output_size
    else:
        oh = ow = output_size
    H, W = x.shape[2:]
    if 0 in x.shape[1:]:   # torch refuses these too
        raise ValueError(f"adaptive_avgpool2d: the input of shape {tuple(x.shape)} is empty: only the batch "
                         "size N may be 0")
    oh, ow = H if oh is None else int(oh), W if ow is None else int(ow)  # None keeps that size, as torch
    if oh < 1 or ow < 1:
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    return oh, ow


def _averaging_matrix(size, out_size, like):
    """(out_size, size) matrix whose row a averages torch's adaptive window
    [floor(a*size/out_size), ceil((a+1)*size/out_size)) (eq. P5)."""
    a = np.arange(out_size)
    start = (a * size) // out_size
    end = -((-(a + 1) * size) // out_size)            # ceil
    m = np.zeros((out_size, size))
    for row in range(out_size):
        m[row, start[row]:end[row]] = 1.0 / (end[row] - start[row])
    return get_array_module(like).asarray(m, dtype=like.dtype)


def adaptive_avgpool2d_forward(x, output_size):
    """Average pooling to a fixed output size (Ho, Wo) with torch's windows (eq. P5).

    x: (N, C, H, W); output_size: int, (Ho, Wo) pair, None entries keep the input size.
    Output row a averages input rows [floor(a*H/Ho), ceil((a+1)*H/Ho)), and likewise
    for columns; any Ho, Wo >= 1 works, smaller or larger than H, W. Output size 1 is
    the global average (eq. P6). A window is a block of rows times a block of columns,
    so its average is separable: out = A_h @ x @ A_w^T, with A_h (Ho, H) and A_w (Wo, W)
    averaging matrices. When Ho, Wo divide H, W the windows are equal and disjoint and
    plain average pooling (kernel H/Ho x W/Wo, eq. P5) does it faster.
    Returns (out (N, C, Ho, Wo), cache).
    """
    oh, ow = _adaptive_size(x, output_size)
    H, W = x.shape[2:]
    if (oh, ow) == (1, 1):
        return x.mean(axis=(2, 3), keepdims=True), GlobalAvgPoolCache(tuple(x.shape))
    if H % oh == 0 and W % ow == 0:
        return avgpool2d_forward(x, (H // oh, W // ow))
    rows, cols = _averaging_matrix(H, oh, x), _averaging_matrix(W, ow, x)
    return rows @ x @ cols.T, AdaptiveAvgPoolCache(rows, cols, tuple(x.shape))


def adaptive_avgpool2d_backward(dout, cache):
    """dx: (N, C, H, W) from dout (N, C, Ho, Wo): every input pixel gets the share 1/(window size)
    of the dout of each window it is in (eq. P7 for output size 1; A_h^T @ dout @ A_w in general)."""
    if isinstance(cache, GlobalAvgPoolCache):
        xp = get_array_module(dout)
        x_shape = cache.x_shape
        check_grad_shape("adaptive_avgpool2d_backward", "dout", dout, (*x_shape[:2], 1, 1))
        return xp.broadcast_to(dout / (x_shape[2] * x_shape[3]), x_shape).copy()
    if isinstance(cache, AdaptiveAvgPoolCache):
        x_shape = cache.x_shape
        check_grad_shape("adaptive_avgpool2d_backward", "dout", dout,
                         (*x_shape[:2], cache.rows.shape[0], cache.cols.shape[0]))
        return cache.rows.T @ dout @ cache.cols
    return avgpool2d_backward(dout, cache)
