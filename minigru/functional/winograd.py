"""Winograd convolution for 3x3, stride-1 layers: F(2x2, 3x3) and F(4x4, 3x3) (docs/derivations.md §W,
eqs. W1-W12).

im2col spends 9·C multiplies (and adds) per output pixel and filter (eq. C5). Winograd's minimal
filtering algorithm F(m x m, 3 x 3) computes an m x m block of outputs from a t x t tile of the input,
t = m + 2, with t² multiplies instead of 9·m² (eqs. W7, W12) after cheap linear transforms of the tile
and of the filter (done once per call): F(2x2, 3x3) (``algorithm="winograd"``) 16 for 4 outputs, 2.25x
fewer; F(4x4, 3x3) (``algorithm="winograd4"``) 36 for 16 outputs, 4x fewer, with transforms that hold
larger coefficients and so round more. The matrices and the way they are applied to whole arrays live in
:mod:`minigru.functional.winograd_transforms`; the kernels here take the variant's m. Summed over the
input channels, the t² elementwise products become t² independent matrix products (eq. W6)::

    M[u] = U[u] @ V[u]      U: (t², K, C) filters,  V: (t², C, P) input tiles,  M: (t², K, P)

with P = N · tiles per image, so the work still runs in BLAS, and the transforms are additions (and a
few multiplications by small integers) over whole arrays. The input gradient of a stride-1 3x3 layer is
itself a stride-1 3x3 correlation (eq. W8), so it reuses the same routine, and the weight gradient is the
adjoint of the forward pass in the filters (eq. W9): t² more matrix products, with the same saving.

Layout: the kernels work on images stored channels first and batch last, (C, H, W, N) ("CHWN").
Every slice they take (every m-th row, every m-th column of a tile grid) then keeps the batch axis as
its contiguous inner run, N numbers long, instead of rows of 2 to 8 numbers, which NumPy would pay a
fixed cost for each. The conversion from and to (N, C, H, W) is one transposing copy at each end, the
same copy that im2col's layout costs (functional/conv.py).

What the forward pass keeps for the backward pass is the transformed input V (t², C, th·tw·N), for
th x tw tiles per image: (t/m)² times the input, 4x for F(2x2, 3x3) and 2.25x for F(4x4, 3x3) (more
for sizes that are not multiples of m), where im2col keeps its columns, 9x. The weight gradient needs
exactly V (eq. W9).

Shapes::

    x        (N, C, H, W)         weight  (K, C, 3, 3)        out  (N, K, Ho, Wo)
    pads     (top, bottom, left, right), as functional.conv.conv_geometry gives them
    m        2 or 4, the output block; t = m + 2 the tile
    Ho = H + top + bottom - 2, Wo likewise; th = ceil(Ho / m), tw = ceil(Wo / m) tiles
"""
from __future__ import annotations

import numpy as np

from .._checks import pair
from ..backend import get_array_module, values_on_host
from . import _workspace
from .winograd_transforms import apply_transform, transform_plan, winograd_variant

__all__ = ["WINOGRAD_MIN_CHANNELS", "WINOGRAD_MIN_CHANNELS_AVX512", "winograd_min_channels", "WINOGRAD_MIN_BATCH",
           "WINOGRAD_OUTPUT_BLOCK", "conv_algorithm", "winograd_filter_transform", "winograd_correlate",
           "winograd_conv2d_forward", "winograd_conv2d_backward"]

ALGORITHMS = ("auto", "im2col", "winograd", "winograd4")
"""The values of the ``algorithm`` argument of conv2d_forward and Conv2d: ``"im2col"`` (eqs. C4-C9),
``"winograd"`` (F(2x2, 3x3)), ``"winograd4"`` (F(4x4, 3x3); both 3x3 stride-1 only) and ``"auto"``
(:func:`conv_algorithm`)."""

WINOGRAD_OUTPUT_BLOCK = {"winograd": 2, "winograd4": 4}
"""m, the side of the output block, of each Winograd algorithm: F(m x m, 3 x 3)."""

WINOGRAD_MIN_CHANNELS = 64
"""``algorithm="auto"`` runs Winograd F(2x2, 3x3) for a 3x3, stride-1 layer when both its input and output channel
counts are at least this (where NumPy's BLAS runs AVX-512 kernels: :data:`WINOGRAD_MIN_CHANNELS_AVX512`).
Per output pixel the GEMMs save 9·C·K - 4·C·K multiply-adds, while the transforms add about 6·C + 6·K
memory-bound additions and copies (docs/derivations.md §W, "What it costs"), so the gain grows with the
channel counts; the measurements behind the value are in docs/performance.md, item 9
(``benchmarks/conv_algorithms.py``)."""

WINOGRAD_MIN_CHANNELS_AVX512 = 128
"""The channel threshold of ``algorithm="auto"`` where NumPy's BLAS is OpenBLAS with AVX-512 kernels
(:func:`minigru.perf.blas_has_avx512_kernels`). The saved multiply-adds then cost half the time (one thread
multiplies float32 matrices 1.5-1.9x faster than with AVX2 kernels on the benchmark VM) while the transforms
move as much memory as before, so it takes twice the channels for Winograd to gain: with OpenBLAS's SkylakeX
kernels, F(2x2, 3x3) took 1.0-1.35x im2col's time on the models' layers with 64 input channels and
0.67-0.94x on those with 128 or 256 channels at 4x4 to 8x8 pixels, at batches of 32 and 128 (docs/performance.md,
item 9)."""


def winograd_min_channels() -> int:
    """The channel threshold of ``algorithm="auto"`` for NumPy's BLAS in this process:
    :data:`WINOGRAD_MIN_CHANNELS_AVX512` with OpenBLAS's AVX-512 kernels, :data:`WINOGRAD_MIN_CHANNELS` otherwise."""
    from .. import perf  # noqa: PLC0415  (perf is opt-in: ``import minigru`` does not load threadpoolctl)
    return WINOGRAD_MIN_CHANNELS_AVX512 if perf.blas_has_avx512_kernels() else WINOGRAD_MIN_CHANNELS


WINOGRAD_MIN_BATCH = 32
"""``algorithm="auto"`` runs Winograd only for batches of at least this many images: the transforms
slice arrays whose contiguous inner run is the batch (module docstring, "Layout"), so a small batch
pays NumPy's fixed cost per short run (docs/performance.md, item 9)."""


def conv_algorithm(algorithm, kernel_size, stride, in_channels, out_channels, batch) -> str:
    """The algorithm a convolution runs, ``"im2col"``, ``"winograd"`` or ``"winograd4"``, for ``algorithm`` in
    :data:`ALGORITHMS`.

    ``"auto"``: Winograd F(2x2, 3x3) for 3x3 kernels with stride 1, at least :func:`winograd_min_channels`
    input and output channels (64, or 128 with OpenBLAS's AVX-512 kernels) and a batch of at least
    :data:`WINOGRAD_MIN_BATCH` images, im2col otherwise (never ``"winograd4"``: that is chosen by name only).
    ``"winograd"`` or ``"winograd4"`` for another kernel or stride raises a ValueError.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}")
    valid = pair(kernel_size, "kernel_size") == (3, 3) and pair(stride, "stride") == (1, 1)
    if algorithm in WINOGRAD_OUTPUT_BLOCK and not valid:
        raise ValueError(f"algorithm={algorithm!r} needs a 3x3 kernel with stride 1, got kernel_size="
                         f"{kernel_size!r}, stride={stride!r}; use 'im2col' or 'auto'")
    if algorithm == "auto":
        if not valid or batch < WINOGRAD_MIN_BATCH:
            return "im2col"
        return "winograd" if min(in_channels, out_channels) >= winograd_min_channels() else "im2col"
    return algorithm


def winograd_filter_transform(weight, m=2):
    """U = G g G^T for every filter (eq. W5): weight (K, C, 3, 3) -> U (t², K, C), contiguous, t = m + 2.

    Row u*t + v of the stack holds entry (u, v) of every filter's t x t transform. All K*C filters go
    through one matrix product with the Kronecker product G ⊗ G (t², 9), whose entry (u*t + v, i*3 + j)
    is G[u, i] G[v, j]: that is (G g G^T)[u, v] for the flattened g, and one (t², 9) x (9, K*C) GEMM is
    much faster than K*C little t x 3 products. F(2x2, 3x3)'s G holds halves, exact in binary, so its
    transform rounds only in its additions; F(4x4, 3x3)'s holds sixths (eq. W11), which round.
    """
    xp = get_array_module(weight)
    K, C = weight.shape[:2]
    t = winograd_variant(m).tile
    return xp.matmul(_kron_g(xp, weight.dtype, m), weight.reshape(K * C, 9).T).reshape(t * t, K, C)


def _kron_g(xp, dtype, m):
    """G ⊗ G (t², 9) in ``dtype``: the filter transform of every flattened 3x3 filter at once (read from
    the variant at each call, so that a test can change G)."""
    G = winograd_variant(m).G
    return xp.asarray(np.kron(G, G), dtype=dtype)


BLOCK_BYTES = 1 << 20
"""The transforms run over a few channels at a time, so that their intermediate (the first of the two
stages, ``A^T M`` or ``B^T d``) stays in the core's cache for the second stage: about this many bytes."""


def _blocks(channels: int, bytes_per_channel: int):
    """Channel slices of about BLOCK_BYTES of intermediate each."""
    step = max(1, BLOCK_BYTES // max(1, bytes_per_channel))
    return [slice(c0, min(channels, c0 + step)) for c0 in range(0, channels, step)] or [slice(0, 0)]


def _work(tag, plan, shape, like):
    """The work arrays (plan.buffers, *shape) that :func:`~minigru.functional.winograd_transforms.apply_transform`
    needs for ``plan`` with outputs of ``shape`` (a reused buffer), or None when it needs none."""
    return _workspace.scratch(tag, (plan.buffers, *shape), like) if plan.buffers else None


def _head(work, c, axis=0):
    """The work arrays for the first c channels (on ``axis`` of each work array) of a block: a view."""
    return None if work is None else work[(slice(None),) * (axis + 1) + (slice(0, c),)]


def _tile_transform(image, matrix, th, tw, m, tag):
    """R d R^T for every tile d of a CHWN image, R = ``matrix`` (t, n), the tiles n x n windows every m pixels:
    image (C, >= m*(th-1)+n, >= m*(tw-1)+n, N) -> (t², C, th*tw*N).

    It is V = B^T d B of the forward pass (eq. W5: R = B^T, n = t, the tiles overlap by 2 pixels) and
    Z = A dY A^T of the weight gradient (eq. W9: R = A, n = m, the m x m blocks of dY). Rows first: row i
    of every tile is the strided view image[:, i::m] (th rows); then columns alike. ``tag`` names the work
    buffers.
    """
    xp = get_array_module(image)
    plan = transform_plan(matrix)
    t, n = matrix.shape
    C, _, W, N = image.shape
    blocks = _blocks(C, t * th * W * N * image.itemsize)
    step = blocks[0].stop - blocks[0].start
    half = _workspace.scratch(tag + ":rows", (t, step, th, W, N), image)     # R d, for every tile row
    work_rows = _work(tag + ":rows-work", plan, (step, th, W, N), image)
    work_cols = _work(tag + ":cols-work", plan, (step, th, tw, N), image)
    v = xp.empty((t, t, C, th, tw, N), dtype=image.dtype)     # large: fresh, as functional/conv.py explains
    for block in blocks:
        c = block.stop - block.start
        h = half[:, :c]
        rows = [image[block, i:i + m * th:m] for i in range(n)]             # n x (c, th, W, N), views
        apply_transform(plan, rows, list(h), _head(work_rows, c))
        for u in range(t):
            cols = [h[u][:, :, j:j + m * tw:m] for j in range(n)]            # n x (c, th, tw, N), views
            apply_transform(plan, cols, [v[u, w, block] for w in range(t)], _head(work_cols, c))   # (R d) R^T
    return v.reshape(t * t, C, th * tw * N)


def _output_transform(mm, K, th, tw, N, m):
    """Y = A^T M A for every tile (eqs. W5, W6): mm (t², K, th*tw*N) -> y (K, m*th, m*tw, N).

    Output pixel (a, b) of tile (ty, tx) lands at (m*ty + a, m*tx + b): the strided view y[:, a::m, b::m].
    """
    xp = get_array_module(mm)
    plan = transform_plan(winograd_variant(m).AT)
    t = m + 2
    mm = mm.reshape(t, t, K, th, tw, N)
    blocks = _blocks(K, m * t * th * tw * N * mm.itemsize)
    step = blocks[0].stop - blocks[0].start
    half = _workspace.scratch("winograd:out", (m, t, step, th, tw, N), mm)   # A^T M
    work_rows = _work("winograd:out-work", plan, (t, step, th, tw, N), mm)
    work_cols = _work("winograd:out-work2", plan, (step, th, tw, N), mm)
    y = xp.empty((K, m * th, m * tw, N), dtype=mm.dtype)
    for block in blocks:
        c = block.stop - block.start
        h = half[:, :, :c]
        apply_transform(plan, [mm[u, :, block] for u in range(t)], list(h), _head(work_rows, c, axis=1))
        for a in range(m):
            outs = [y[block, a::m, b::m] for b in range(m)]                  # m x (c, th, tw, N), views
            apply_transform(plan, list(h[a]), outs, _head(work_cols, c))
    return y


def winograd_correlate(xpad, u, th, tw, m=2):
    """Stride-1 3x3 correlation of an already padded CHWN image with transformed filters (eqs. W5-W6).

    xpad: (C, m*th+2, m*tw+2, N), u: (t², K, C) from :func:`winograd_filter_transform` with the same m.
    Returns y: (K, m*th, m*tw, N), y[k, a, b, n] = sum_{c,i,j} g[k, c, i, j] xpad[c, a+i, b+j, n].
    """
    return _correlate(xpad, u, th, tw, m)[0]


def _correlate(xpad, u, th, tw, m):
    """:func:`winograd_correlate`, also returning the transformed input tiles v (t², C, th*tw*N)."""
    xp = get_array_module(xpad, u)
    t = winograd_variant(m).tile
    if u.shape[0] != t * t:
        raise ValueError(f"winograd_correlate: filters transformed for F(m x m, 3 x 3) with m = {m} have shape "
                         f"({t * t}, K, C), got {tuple(u.shape)}")
    K, N = u.shape[1], xpad.shape[3]
    v = _tile_transform(xpad, winograd_variant(m).BT, th, tw, m, "winograd:x")   # (t², C, P): the forward keeps it
    mm = xp.empty((t * t, K, v.shape[2]), dtype=xpad.dtype)
    xp.matmul(u, v, out=mm)                                     # the t² GEMMs (eq. W6), one call
    return _output_transform(mm, K, th, tw, N, m), v


def _tiles(n_out: int, m: int) -> int:
    return -(-n_out // m)          # a size that is no multiple of m gets one more tile; its extra rows are cropped


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


COPY_BLOCK_PIXELS = 512
""":func:`_to_nchw` copies this many pixels per channel block at most (at least one channel)."""


def _to_nchw(src, out):
    """out[...] = src.transpose(3, 0, 1, 2): a (C, H, W, N) view, batch last, into out (N, C, H, W).

    A plain copy walks ``out`` in its own order, so for each image it reads one number from every
    cache line of the whole source, whose lines hold 16 images' values of one pixel: 57,600 lines for
    the hour recipe's 256 x 15 x 15 output, more than the core's cache, so every line is fetched again
    for each image. Copying c channels at a time, c·H·W <= COPY_BLOCK_PIXELS source lines (32 KiB, which
    stay in L1 for the next 15 images), made that copy 3x faster (21 against 7 ms at batch 128; 64
    against 14 ms at batch 256) and no copy slower (docs/performance.md, item 9). On a GPU one copy.
    """
    C, H, W = src.shape[:3]
    step = C if not values_on_host(src) else max(1, COPY_BLOCK_PIXELS // max(1, H * W))
    for c0 in range(0, C, step):
        out[:, c0:c0 + step] = src[c0:c0 + step].transpose(3, 0, 1, 2)
    return out


def winograd_conv2d_forward(x, weight, bias, pads, m=2):
    """Forward pass of a 3x3, stride-1 convolution (eq. C1) by Winograd F(m x m, 3 x 3), m = 2 or 4.

    x: (N, C, H, W), weight: (K, C, 3, 3), bias: (K,) or None, pads: (top, bottom, left, right).
    Returns (out, v): out (N, K, Ho, Wo) and the transformed input tiles v (t², C, th*tw*N), t = m + 2
    (eq. W5), which :func:`winograd_conv2d_backward` needs for the weight gradient.
    """
    xp = get_array_module(x, weight)
    N, C, H, W = x.shape
    K = weight.shape[0]
    top, bottom, left, right = pads
    Ho, Wo = H + top + bottom - 2, W + left + right - 2
    th, tw = _tiles(Ho, m), _tiles(Wo, m)
    # Zeros: the padding and the round-up to whole tiles. A reused buffer, one per (input size, pads, shape):
    # the input size and pads fix the region written (for either m), so its border stays 0.
    xpad = _workspace.scratch(f"winograd:x{(H, W)}{pads}", (C, m * th + 2, m * tw + 2, N), x)
    _place(xpad, x.transpose(1, 2, 3, 0), top, left)
    y, v = _correlate(xpad, winograd_filter_transform(weight, m), th, tw, m)
    out = _to_nchw(y[:, :Ho, :Wo], xp.empty((N, K, Ho, Wo), dtype=x.dtype))
    if bias is not None:
        out += bias.reshape(1, K, 1, 1)
    return out, v


def winograd_conv2d_backward(dout, v, weight, x_shape, pads, has_bias, need_dx=True, m=2):
    """Gradients of :func:`winograd_conv2d_forward` with the same m: (dx or None, dweight, dbias or None).

    dout: (N, K, Ho, Wo); v: the transformed input tiles (t², C, th*tw*N) the forward pass returned;
    weight (K, C, 3, 3).
    * dweight (eq. W9): the adjoint of the forward pass in g, dU_xi = Z_xi V_xi^T for the t² positions
      xi (t² GEMMs (K, P) @ (P, C), as few multiplies as the forward pass, eqs. W7, W12), then G^T dU G.
    * dx (eq. W8): the correlation of dout, padded by 2 - pad on each side, with the filters rotated
      by 180 degrees and their two channel axes swapped, by :func:`winograd_correlate` again.
    * dbias (eq. C7): the sum of dout over n, a, b.
    """
    xp = get_array_module(dout, v)
    N, C, H, W = x_shape
    K = weight.shape[0]
    Ho, Wo = dout.shape[2:]
    top, _, left, _ = pads
    t = winograd_variant(m).tile
    th, tw = _tiles(Ho, m), _tiles(Wo, m)
    if tuple(v.shape) != (t * t, C, th * tw * N):
        raise ValueError(f"winograd_conv2d_backward: the tiles of F({m}x{m}, 3x3) for this layer have shape "
                         f"{(t * t, C, th * tw * N)}, got {tuple(v.shape)}")
    dout_chwn = xp.empty((K, Ho, Wo, N), dtype=dout.dtype)     # batch last, like the tiles
    dout_chwn[...] = dout.transpose(1, 2, 3, 0)
    dbias = dout_chwn.sum(axis=(1, 2, 3)) if has_bias else None

    dy = dout_chwn
    if (Ho, Wo) != (m * th, m * tw):    # no multiple of m: the cropped outputs of the last tiles get gradient 0
        dy = _workspace.scratch("winograd:dy" + str((Ho, Wo)), (K, m * th, m * tw, N), dout)
        dy[:, :Ho, :Wo] = dout_chwn
    z = _tile_transform(dy, winograd_variant(m).AT.T, th, tw, m, "winograd:dy")   # Z = A dY A^T (t², K, P)
    du = xp.matmul(z, v.transpose(0, 2, 1))                      # (t², K, C): the t² GEMMs of eq. W9
    # G^T dU G for every filter: the transpose of winograd_filter_transform's product with G ⊗ G
    dweight = xp.matmul(du.reshape(t * t, K * C).T, _kron_g(xp, weight.dtype, m)).reshape(weight.shape)
    if not need_dx:
        return None, dweight, dbias

    dx_th, dx_tw = _tiles(H, m), _tiles(W, m)      # dx's own tile grid: its output is the H x W input
    # A reused buffer, one per (dout size, pads, shape): those fix the region written, so its border stays 0.
    dpad = _workspace.scratch(f"winograd:dout{(Ho, Wo)}{pads}", (K, m * dx_th + 2, m * dx_tw + 2, N), dout)
    _place(dpad, dout_chwn, 2 - top, 2 - left)
    flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)                      # (C, K, 3, 3)
    dx_chwn = winograd_correlate(dpad, winograd_filter_transform(flipped, m), dx_th, dx_tw, m)   # (C, m*dx_th, ...)
    return _to_nchw(dx_chwn[:, :H, :W], xp.empty(x_shape, dtype=dout.dtype)), dweight, dbias
