"""Winograd F(2x2, 3x3) convolution for 3x3, stride-1 layers (docs/derivations.md §W, eqs. W1-W9).

im2col spends 9·C multiplies (and adds) per output pixel and filter (eq. C5). Winograd's minimal
filtering algorithm computes a 2x2 block of outputs from a 4x4 tile of the input with 16
multiplies instead of 36 (eq. W7), 2.25x fewer, after cheap linear transforms of the tile
(additions only) and of the filter (done once per call). Summed over the input channels, the
16 elementwise products become 16 independent matrix products (eq. W6)::

    M[u] = U[u] @ V[u]      U: (16, K, C) filters,  V: (16, C, P) input tiles,  M: (16, K, P)

with P = N · tiles per image, so the work still runs in BLAS, and the transforms are additions
over whole arrays. The input gradient of a stride-1 3x3 layer is itself a stride-1 3x3
correlation (eq. W8), so it reuses the same routine, and the weight gradient is the adjoint of
the forward pass in the filters (eq. W9): 16 more matrix products, with the same saving.

Layout: the kernels work on images stored channels first and batch last, (C, H, W, N) ("CHWN").
Every slice they take (every other row, every other column of a tile grid) then keeps the batch
axis as its contiguous inner run, N numbers long, instead of rows of 2 to 8 numbers, which NumPy
would pay a fixed cost for each. The conversion from and to (N, C, H, W) is one transposing copy
at each end, the same copy that im2col's layout costs (functional/conv.py).

What the forward pass keeps for the backward pass is the transformed input V (16, C, th·tw·N),
for th x tw tiles per image: 4x the input (a little more for odd sizes), where im2col keeps its
columns, 9x. The weight gradient needs exactly V (eq. W9).

Shapes::

    x        (N, C, H, W)         weight  (K, C, 3, 3)        out  (N, K, Ho, Wo)
    pads     (top, bottom, left, right), as functional.conv.conv_geometry gives them
    Ho = H + top + bottom - 2, Wo likewise; th = ceil(Ho / 2), tw = ceil(Wo / 2) tiles
"""
from __future__ import annotations

import numpy as np

from .._checks import pair
from ..backend import get_array_module
from . import _workspace

# (the matrices BT, G, AT are read as minigru.functional.winograd.BT etc., not re-exported)
__all__ = ["WINOGRAD_MIN_CHANNELS", "WINOGRAD_MIN_BATCH", "conv_algorithm", "winograd_filter_transform", "winograd_correlate",
           "winograd_conv2d_forward", "winograd_conv2d_backward"]

ALGORITHMS = ("auto", "im2col", "winograd")
"""The values of the ``algorithm`` argument of conv2d_forward and Conv2d."""

WINOGRAD_MIN_CHANNELS = 64
"""``algorithm="auto"`` runs Winograd for a 3x3, stride-1 layer when both its input and output channel
counts are at least this. Per output pixel the GEMMs save 9·C·K - 4·C·K multiply-adds, while the
transforms add about 6·C + 6·K memory-bound additions and copies (docs/derivations.md §W, "What it
costs"), so the gain grows with the channel counts; the measurements behind the value are in
docs/performance.md, item 9 (``benchmarks/conv_algorithms.py``)."""

WINOGRAD_MIN_BATCH = 32
"""``algorithm="auto"`` runs Winograd only for batches of at least this many images: the transforms
slice arrays whose contiguous inner run is the batch (module docstring, "Layout"), so a small batch
pays NumPy's fixed cost per short run (docs/performance.md, item 9)."""

# Lavin & Gray (2016), "Fast algorithms for convolutional neural networks", F(2, 3): interpolation
# at the points 0, 1, -1 and infinity (eqs. W1-W4). One 1-D output pair is y = AT [(G g) * (BT d)].
BT = np.array([[1, 0, -1, 0],
               [0, 1, 1, 0],
               [0, -1, 1, 0],
               [0, 1, 0, -1]], dtype=np.float64)   # (4, 4) input-tile transform
G = np.array([[1, 0, 0],
              [0.5, 0.5, 0.5],
              [0.5, -0.5, 0.5],
              [0, 0, 1]], dtype=np.float64)         # (4, 3) filter transform
AT = np.array([[1, 1, 1, 0],
               [0, 1, -1, -1]], dtype=np.float64)   # (2, 4) output transform


def conv_algorithm(algorithm, kernel_size, stride, in_channels, out_channels, batch) -> str:
    """The algorithm a convolution runs, ``"im2col"`` or ``"winograd"``, for ``algorithm`` in :data:`ALGORITHMS`.

    ``"auto"``: Winograd for 3x3 kernels with stride 1, at least :data:`WINOGRAD_MIN_CHANNELS` input and
    output channels and a batch of at least :data:`WINOGRAD_MIN_BATCH` images, im2col otherwise.
    ``"winograd"`` for another kernel or stride raises a ValueError.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}")
    valid = pair(kernel_size, "kernel_size") == (3, 3) and pair(stride, "stride") == (1, 1)
    if algorithm == "winograd" and not valid:
        raise ValueError(f"algorithm='winograd' needs a 3x3 kernel with stride 1, got kernel_size="
                         f"{kernel_size!r}, stride={stride!r}; use 'im2col' or 'auto'")
    if algorithm == "auto":
        big = min(in_channels, out_channels) >= WINOGRAD_MIN_CHANNELS and batch >= WINOGRAD_MIN_BATCH
        return "winograd" if valid and big else "im2col"
    return algorithm


def _combine(xp, coefficients, parts, out) -> None:
    """out = sum_i coefficients[i] * parts[i], in place, without temporaries.

    A row of B^T or A^T has only 0 and ±1 in it, so the transform is additions and subtractions
    of whole arrays, the first two terms in one pass (``a - b`` rather than ``a``, then ``-= b``).
    Other coefficients (a deliberately changed matrix in a test) still work.
    """
    terms = [(float(c), part) for c, part in zip(coefficients, parts) if c != 0]
    if not terms:
        out[...] = 0
        return
    (c0, p0), rest = terms[0], terms[1:]
    if rest and c0 in (1.0, -1.0) and rest[0][0] in (1.0, -1.0) and (c0, rest[0][0]) != (-1.0, -1.0):
        c1, p1 = rest.pop(0)
        if c0 == c1:
            xp.add(p0, p1, out=out)
        elif c0 == 1.0:
            xp.subtract(p0, p1, out=out)
        else:
            xp.subtract(p1, p0, out=out)
    elif c0 == 1.0:
        out[...] = p0
    else:
        xp.multiply(p0, c0, out=out)
    for c, part in rest:
        if c == 1.0:
            xp.add(out, part, out=out)
        elif c == -1.0:
            xp.subtract(out, part, out=out)
        else:
            out += c * part


def winograd_filter_transform(weight):
    """U = G g G^T for every filter (eq. W5): weight (K, C, 3, 3) -> U (16, K, C), contiguous.

    Row u*4 + v of the stack holds entry (u, v) of every filter's 4x4 transform. All K*C filters
    go through one matrix product with the Kronecker product G ⊗ G (16, 9), whose entry
    (u*4 + v, i*3 + j) is G[u, i] G[v, j]: that is (G g G^T)[u, v] for the flattened g, and
    one (16, 9) x (9, K*C) GEMM is much faster than K*C little 4x3 products. G has 0.5 in it,
    which is exact in binary, so the transform rounds only in its additions.
    """
    xp = get_array_module(weight)
    K, C = weight.shape[:2]
    return xp.matmul(_kron_g(xp, weight.dtype), weight.reshape(K * C, 9).T).reshape(16, K, C)


def _kron_g(xp, dtype):
    """G ⊗ G (16, 9) in ``dtype``: the filter transform of every flattened 3x3 filter at once (read from
    the module's G at each call, so that a test can change G)."""
    return xp.asarray(np.kron(G, G), dtype=dtype)


BLOCK_BYTES = 1 << 20
"""The transforms run over a few channels at a time, so that their intermediate (the first of the two
stages, ``A^T M`` or ``B^T d``) stays in the core's cache for the second stage: about this many bytes."""


def _blocks(channels: int, bytes_per_channel: int):
    """Channel slices of about BLOCK_BYTES of intermediate each."""
    step = max(1, BLOCK_BYTES // max(1, bytes_per_channel))
    return [slice(c0, min(channels, c0 + step)) for c0 in range(0, channels, step)] or [slice(0, 0)]


def _input_transform(xpad, th, tw):
    """V = B^T d B for every 4x4 tile d (eq. W5): xpad (C, 2th+2, 2tw+2, N) -> V (16, C, th*tw*N).

    Tile (ty, tx) starts at row 2*ty, column 2*tx: neighbouring tiles overlap by 2 pixels. Rows
    first: row i of every tile is the strided view xpad[:, i::2] (th rows); then columns alike.
    """
    xp = get_array_module(xpad)
    C, Hp, Wp, N = xpad.shape
    blocks = _blocks(C, 4 * th * Wp * N * xpad.itemsize)
    step = blocks[0].stop - blocks[0].start
    half = _workspace.scratch("winograd:rows", (4, step, th, Wp, N), xpad)   # B^T d, for every tile row
    v = xp.empty((4, 4, C, th, tw, N), dtype=xpad.dtype)
    for block in blocks:
        h = half[:, :block.stop - block.start]
        rows = [xpad[block, i:i + 2 * th:2] for i in range(4)]         # 4 x (c, th, Wp, N), views
        for u in range(4):
            _combine(xp, BT[u], rows, h[u])
        for u in range(4):
            cols = [h[u][:, :, j:j + 2 * tw:2] for j in range(4)]       # 4 x (c, th, tw, N), views
            for w in range(4):
                _combine(xp, BT[w], cols, v[u, w, block])              # (B^T d) B, column w
    return v.reshape(16, C, th * tw * N)


def _output_transform(m, K, th, tw, N):
    """Y = A^T M A for every tile (eqs. W5, W6): m (16, K, th*tw*N) -> y (K, 2th, 2tw, N).

    Output pixel (a, b) of tile (ty, tx) lands at (2*ty + a, 2*tx + b): the strided view y[:, a::2, b::2].
    """
    xp = get_array_module(m)
    m = m.reshape(4, 4, K, th, tw, N)
    blocks = _blocks(K, 8 * th * tw * N * m.itemsize)
    step = blocks[0].stop - blocks[0].start
    half = _workspace.scratch("winograd:out", (2, 4, step, th, tw, N), m)   # A^T M
    y = xp.empty((K, 2 * th, 2 * tw, N), dtype=m.dtype)
    for block in blocks:
        h = half[:, :, :block.stop - block.start]
        for a in range(2):
            _combine(xp, AT[a], [m[u, :, block] for u in range(4)], h[a])
        for a in range(2):
            for b in range(2):
                _combine(xp, AT[b], [h[a][v] for v in range(4)], y[block, a::2, b::2])
    return y


def winograd_correlate(xpad, u, th, tw):
    """Stride-1 3x3 correlation of an already padded CHWN image with transformed filters (eqs. W5-W6).

    xpad: (C, 2th+2, 2tw+2, N), u: (16, K, C) from :func:`winograd_filter_transform`.
    Returns y: (K, 2th, 2tw, N), y[k, a, b, n] = sum_{c,i,j} g[k, c, i, j] xpad[c, a+i, b+j, n].
    """
    return _correlate(xpad, u, th, tw)[0]


def _correlate(xpad, u, th, tw):
    """:func:`winograd_correlate`, also returning the transformed input tiles v (16, C, th*tw*N)."""
    xp = get_array_module(xpad, u)
    K, N = u.shape[1], xpad.shape[3]
    v = _input_transform(xpad, th, tw)                           # (16, C, P), fresh: the forward pass keeps it
    m = xp.empty((16, K, v.shape[2]), dtype=xpad.dtype)
    xp.matmul(u, v, out=m)                                       # the 16 GEMMs (eq. W6), one call
    return _output_transform(m, K, th, tw, N), v


def _tiles(n_out: int) -> int:
    return (n_out + 1) // 2        # an odd size gets one more tile; its extra row is cropped


def _place(dest, src, top, left):
    """Copy src (C, h, w, N) into dest (C, Hd, Wd, N) at offset (top, left); a negative offset crops
    src instead (the input gradient of a layer padded by more than 2), as does dest's far edge."""
    h, w = src.shape[1:3]
    s_top, s_left = max(0, -top), max(0, -left)
    d_top, d_left = max(0, top), max(0, left)
    rows = min(h - s_top, dest.shape[1] - d_top)
    cols = min(w - s_left, dest.shape[2] - d_left)
    if rows > 0 and cols > 0:
        dest[:, d_top:d_top + rows, d_left:d_left + cols] = src[:, s_top:s_top + rows, s_left:s_left + cols]


def winograd_conv2d_forward(x, weight, bias, pads):
    """Forward pass of a 3x3, stride-1 convolution (eq. C1) by Winograd F(2x2, 3x3).

    x: (N, C, H, W), weight: (K, C, 3, 3), bias: (K,) or None, pads: (top, bottom, left, right).
    Returns (out, v): out (N, K, Ho, Wo) and the transformed input tiles v (16, C, th*tw*N)
    (eq. W5), which :func:`winograd_conv2d_backward` needs for the weight gradient.
    """
    xp = get_array_module(x, weight)
    N, C, H, W = x.shape
    K = weight.shape[0]
    top, bottom, left, right = pads
    Ho, Wo = H + top + bottom - 2, W + left + right - 2
    th, tw = _tiles(Ho), _tiles(Wo)
    # Zeros: the padding and the round-up to whole tiles. A reused buffer, one per (input size, pads):
    # those fix the region written, so its border stays 0.
    xpad = _workspace.scratch(f"winograd:x{(H, W)}{pads}", (C, 2 * th + 2, 2 * tw + 2, N), x)
    _place(xpad, x.transpose(1, 2, 3, 0), top, left)
    y, v = _correlate(xpad, winograd_filter_transform(weight), th, tw)
    y = y[:, :Ho, :Wo].transpose(3, 0, 1, 2)
    out = xp.empty((N, K, Ho, Wo), dtype=x.dtype)
    if bias is not None:
        xp.add(y, bias.reshape(1, K, 1, 1), out=out)
    else:
        out[...] = y
    return out, v


def _output_gradient_transform(dy, th, tw):
    """Z = A dY A^T for every 2x2 block of dY (eq. W9: the adjoint of the output transform of eq. W5):
    dy (K, 2th, 2tw, N) -> z (16, K, th*tw*N)."""
    xp = get_array_module(dy)
    K, N = dy.shape[0], dy.shape[3]
    blocks = _blocks(K, 4 * th * 2 * tw * N * dy.itemsize)
    step = blocks[0].stop - blocks[0].start
    half = _workspace.scratch("winograd:dy-rows", (4, step, th, 2 * tw, N), dy)
    z = xp.empty((4, 4, K, th, tw, N), dtype=dy.dtype)     # large: fresh, as functional/conv.py explains
    for block in blocks:
        h = half[:, :block.stop - block.start]
        rows = [dy[block, a::2] for a in range(2)]                       # 2 x (k, th, 2tw, N), views
        for u in range(4):
            _combine(xp, AT[:, u], rows, h[u])                           # row u of A = column u of A^T
        for u in range(4):
            cols = [h[u][:, :, b::2] for b in range(2)]                  # 2 x (k, th, tw, N), views
            for w in range(4):
                _combine(xp, AT[:, w], cols, z[u, w, block])
    return z.reshape(16, K, th * tw * N)


def winograd_conv2d_backward(dout, v, weight, x_shape, pads, has_bias, need_dx=True):
    """Gradients of :func:`winograd_conv2d_forward`: (dx or None, dweight, dbias or None).

    dout: (N, K, Ho, Wo); v: the transformed input tiles the forward pass returned; weight (K, C, 3, 3).
    * dweight (eq. W9): the adjoint of the forward pass in g, dU_xi = Z_xi V_xi^T for the 16 positions
      xi (16 GEMMs (K, P) @ (P, C), 2.25x fewer multiplies than im2col's eq. C6), then G^T dU G.
    * dx (eq. W8): the correlation of dout, padded by 2 - pad on each side, with the filters rotated
      by 180 degrees and their two channel axes swapped, by :func:`winograd_correlate` again.
    * dbias (eq. C7): the sum of dout over n, a, b.
    """
    xp = get_array_module(dout, v)
    N, C, H, W = x_shape
    K = weight.shape[0]
    Ho, Wo = dout.shape[2:]
    top, _, left, _ = pads
    th, tw = _tiles(Ho), _tiles(Wo)
    dout_chwn = xp.empty((K, Ho, Wo, N), dtype=dout.dtype)     # batch last, like the tiles
    dout_chwn[...] = dout.transpose(1, 2, 3, 0)
    dbias = dout_chwn.sum(axis=(1, 2, 3)) if has_bias else None

    dy = dout_chwn
    if (Ho, Wo) != (2 * th, 2 * tw):    # odd size: the cropped outputs of the last tiles get gradient 0
        dy = _workspace.scratch("winograd:dy" + str((Ho, Wo)), (K, 2 * th, 2 * tw, N), dout)
        dy[:, :Ho, :Wo] = dout_chwn
    z = _output_gradient_transform(dy, th, tw)                   # (16, K, P)
    du = xp.matmul(z, v.transpose(0, 2, 1))                      # (16, K, C): the 16 GEMMs of eq. W9
    # G^T dU G for every filter: the transpose of winograd_filter_transform's product with G ⊗ G
    dweight = xp.matmul(du.reshape(16, K * C).T, _kron_g(xp, weight.dtype)).reshape(weight.shape)
    if not need_dx:
        return None, dweight, dbias

    dx_th, dx_tw = _tiles(H), _tiles(W)            # dx's own tile grid: its output is the H x W input
    # A reused buffer, one per (dout size, pads): those fix the region written, so its border stays 0.
    dpad = _workspace.scratch(f"winograd:dout{(Ho, Wo)}{pads}", (K, 2 * dx_th + 2, 2 * dx_tw + 2, N), dout)
    _place(dpad, dout_chwn, 2 - top, 2 - left)
    flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)                      # (C, K, 3, 3)
    dx_chwn = winograd_correlate(dpad, winograd_filter_transform(flipped), dx_th, dx_tw)   # (C, 2dx_th, 2dx_tw, N)
    dx = xp.empty(x_shape, dtype=dout.dtype)
    dx[...] = dx_chwn[:, :H, :W].transpose(3, 0, 1, 2)
    return dx, dweight, dbias
