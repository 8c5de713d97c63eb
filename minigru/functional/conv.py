"""2-D convolution as im2col + one matrix product (docs/derivations.md §C, eqs. C1-C9).

A convolution layer (really a cross-correlation, eq. C1) slides a ``kh x kw``
kernel over the padded image. ``im2col`` copies every window into a column
(eq. C4), so the whole layer becomes one matrix product (eq. C5), and the
backward pass is two more products plus ``col2im``, the adjoint of ``im2col``
(eqs. C6-C9).

Shapes used throughout::

    x      (N, C, H, W)          input images
    weight (K, C, kh, kw)        K filters
    bias   (K,)
    out    (N, K, Ho, Wo)        Ho = (H + pad_top + pad_bottom - kh) // sh + 1, same for Wo
    cols   (C*kh*kw, N*Ho*Wo)    one column per output pixel of every image ("merged" layout)

Why it is written this way (the measurements are in docs/performance.md, items 2, 3 and 7):

* One GEMM over the merged layout ``(C*kh*kw, N*Ho*Wo)`` rather than N batched
  GEMMs of ``(C*kh*kw, Ho*Wo)``: it is faster for the forward pass and more so
  for the weight gradient. It costs a transpose of the output and of ``dout``,
  which are 9x smaller than ``cols``.
* im2col/col2im run in one thread: split over threads they are faster alone
  but not inside a forward+backward pass, because OpenBLAS's worker threads
  keep spinning on the other core after each GEMM.
* "Same"-size windows (stride 1, output as large as the input: 3x3 with
  padding 1) are flat shifts of the flattened image (see
  :func:`_im2col_same_size`), so col2im adds rows of H*W numbers instead of W,
  which NumPy's fixed cost per row makes much faster for small images. im2col
  uses the shifts too, on the CPU: a few channels at a time, they took 0.45-0.9x
  the strided copy's time on 3x3 layers from 7x7 to 256x256 pixels.
* Memory: the large work arrays (the GEMM results, ``dcols``) are fresh
  arrays, not kept per shape: with :func:`minigru.perf.tune_host_memory`
  malloc hands the freed block of one layer to the next without page faults,
  so per-shape buffers bought no speed but held memory for every layer at once.
  Only the padded input stays a reused work buffer
  (:func:`minigru.functional._workspace.scratch`): it is small, and its zero
  border is never rewritten.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_grad_shape
from .._checks import pair as _pair
from ..backend import get_array_module
from . import _workspace
from .winograd import WINOGRAD_OUTPUT_BLOCK, conv_algorithm, winograd_conv2d_backward, winograd_conv2d_forward

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "Conv2dCache"]


# ----------------------------------------------------------------- geometry
class ConvGeometry(NamedTuple):
    """Sizes of one sliding-window operation (convolution or pooling)."""
    kh: int
    kw: int
    sh: int
    sw: int
    pads: tuple  # (top, bottom, left, right)
    H: int
    W: int
    Hp: int      # padded height H + top + bottom
    Wp: int
    Ho: int      # output height
    Wo: int


def _pads(padding, kh, kw, sh, sw):
    """(top, bottom, left, right) from an int, a pair, 'valid' or 'same' (torch's rules)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions (as in torch)")
            # torch puts the odd pixel of an even kernel at the bottom/right
            return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2, (kw - 1) // 2, kw - 1 - (kw - 1) // 2)
        raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    ph, pw = _pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return (ph, ph, pw, pw)


def conv_geometry(x_shape, kernel_size, stride=1, padding=0) -> ConvGeometry:
    """Kernel, stride, padding and output sizes for an input of shape (N, C, H, W) (eq. C2).

    ``kernel_size`` and ``stride`` are ints or (h, w) pairs; ``padding`` an int,
    a pair, ``"valid"`` or ``"same"`` (stride 1 only, as torch). Raises a
    ValueError naming the sizes when the kernel does not fit the padded image.
    """
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(stride, "stride")
    if kh < 1 or kw < 1:
        raise ValueError(f"kernel_size must be positive, got {kernel_size!r}")
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be positive, got {stride!r}")
    pads = _pads(padding, kh, kw, sh, sw)
    H, W = int(x_shape[-2]), int(x_shape[-1])
    if H < 1 or W < 1 or (len(x_shape) == 4 and x_shape[1] < 1):   # torch refuses these too
        raise ValueError(f"the input of shape {tuple(x_shape)} is empty: only the batch size N may be 0")
    Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
    if Hp < kh or Wp < kw:
        raise ValueError(f"the input image of {H}x{W} pixels (padded to {Hp}x{Wp}) is smaller than the "
                         f"{kh}x{kw} kernel")
    return ConvGeometry(kh, kw, sh, sw, pads, H, W, Hp, Wp, (Hp - kh) // sh + 1, (Wp - kw) // sw + 1)


# ------------------------------------------------------------ work buffers
def padded_input(x, g: ConvGeometry, fill=0.0):
    """``x`` padded by the geometry's pads with ``fill`` (eq. C3): ``x`` itself without padding, else
    a reused (N, C, Hp, Wp) work buffer (its border is never written, so it keeps ``fill``)."""
    if not any(g.pads):
        return x
    N, C = x.shape[:2]
    xpad = _workspace.scratch("padded:" + str(g.pads), (N, C, g.Hp, g.Wp), x, fill)
    top, _, left, _ = g.pads
    xpad[:, :, top:top + g.H, left:left + g.W] = x
    return xpad


def window_view(xpad, g: ConvGeometry):
    """Strided view (N, C, kh, kw, Ho, Wo) of the padded input, no copy (eq. C4):
    ``view[n, c, i, j, a, b] = xpad[n, c, a*sh + i, b*sw + j]``."""
    xp = get_array_module(xpad)
    N, C = xpad.shape[:2]
    sN, sC, sH, sW = xpad.strides
    return xp.lib.stride_tricks.as_strided(
        xpad, (N, C, g.kh, g.kw, g.Ho, g.Wo), (sN, sC, sH, sW, sH * g.sh, sW * g.sw))


# ---------------------------------------------------------- im2col / col2im
def im2col(x, kh, kw, stride=1, padding=0, *, merge_batch=False):
    """Copy every kh x kw window of the padded input into a column (eq. C4).

    x: (N, C, H, W). ``stride``: int or (sh, sw); ``padding``: int, (ph, pw),
    ``"same"`` or ``"valid"``. Returns

    * ``cols: (N, C*kh*kw, Ho*Wo)`` with ``cols[n, (c*kh + i)*kw + j, a*Wo + b]
      = xpad[n, c, a*sh + i, b*sw + j]``, or
    * with ``merge_batch=True``, ``cols: (C*kh*kw, N*Ho*Wo)``: the same columns
      of all images side by side (column ``n*Ho*Wo + a*Wo + b``), so one GEMM
      covers the whole batch.

    Built as one strided view of the padded input, copied once; for
    "same"-size windows (stride 1, Ho = H, Wo = W) on the CPU by flat shifts
    instead (:func:`_im2col_same_size`), which copies long rows.
    """
    xp = get_array_module(x)
    g = conv_geometry(x.shape, (kh, kw), stride, padding)
    N, C = x.shape[:2]
    if merge_batch and _is_same_size(g) and xp is np:   # many small copies: CPU only
        return _im2col_same_size(x, g)
    windows = window_view(padded_input(x, g), g)          # (N, C, kh, kw, Ho, Wo), a view
    if merge_batch:
        windows = windows.transpose(1, 2, 3, 0, 4, 5)     # (C, kh, kw, N, Ho, Wo)
    cols = xp.empty(windows.shape, dtype=x.dtype)
    cols[...] = windows                                   # the one copy
    if merge_batch:
        return cols.reshape(C * kh * kw, N * g.Ho * g.Wo)
    return cols.reshape(N, C * kh * kw, g.Ho * g.Wo)


def col2im(cols, x_shape, kh, kw, stride=1, padding=0, *, merge_batch=False):
    """The adjoint of :func:`im2col` (eq. C9): add every column back onto the
    pixels its window came from, and drop the padding.

    cols: (N, C*kh*kw, Ho*Wo), or (C*kh*kw, N*Ho*Wo) with ``merge_batch=True``.
    Returns dx: (N, C, H, W) = x_shape, a new array (``cols`` is not changed).
    One strided add per kernel offset (kh*kw adds), each over the whole batch;
    for "same"-size images (stride 1, Ho = H, Wo = W) flat shifted adds
    (:func:`_col2im_same_size`).
    """
    xp = get_array_module(cols)
    N, C, H, W = x_shape
    g = conv_geometry(x_shape, (kh, kw), stride, padding)
    expected = (C * kh * kw, N * g.Ho * g.Wo) if merge_batch else (N, C * kh * kw, g.Ho * g.Wo)
    if tuple(cols.shape) != expected:
        raise ValueError(f"col2im: cols for an input of shape {tuple(x_shape)} must have shape {expected}, "
                         f"got {tuple(cols.shape)}")
    if _is_same_size(g):
        return _col2im_same_size(cols, g, merge_batch, may_overwrite=False)
    if merge_batch:
        patches = cols.reshape(C, kh, kw, N, g.Ho, g.Wo).transpose(3, 0, 1, 2, 4, 5)
    else:
        patches = cols.reshape(N, C, kh, kw, g.Ho, g.Wo)
    # Accumulate in a padded buffer, so that every offset is one rectangular strided add.
    if any(g.pads):
        acc = _workspace.scratch("col2im", (N, C, g.Hp, g.Wp), cols)
        acc.fill(0)
    else:
        acc = xp.zeros(x_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            target = acc[:, :, i:i + g.sh * (g.Ho - 1) + 1:g.sh, j:j + g.sw * (g.Wo - 1) + 1:g.sw]
            xp.add(target, patches[:, :, i, j], out=target)
    if not any(g.pads):
        return acc
    top, _, left, _ = g.pads
    return acc[:, :, top:top + H, left:left + W].copy()


# ------------------------------------------- "same"-size windows as flat shifts
# With stride 1 and padding that keeps the size (Ho = H, Wo = W: 3x3 with padding 1,
# "same"), kernel offset (i, j) reads pixel (a + dy, b + dx) for output pixel (a, b),
# dy = i - top, dx = j - left. In a flattened H*W image that is ONE shift by
# s = dy*W + dx, so each offset is one copy (im2col) or one add (col2im) of rows of about
# H*W numbers, instead of Ho rows of Wo numbers: NumPy pays a fixed cost per row, which
# dominates for rows of 8 or 16 numbers. Two details make the shift exact:
# * flat positions whose source falls outside the image are the top/bottom padding: zeros;
# * a horizontal shift wraps around the row ends: output column b = W-1 with dx = +1 would
#   read column 0 of the next row. Those wrapped entries are exactly the left/right padding,
#   and are set to zero (im2col) or kept out of the sum (col2im) afterwards.
# Both details assume |dy| < H and |dx| < W. Padding as wide as the image (3x3 with padding 1
# on a 1-pixel-high image, 5x5 with padding 2 on a 2x2 one) gives offsets that read nothing
# but padding; their flat shift reaches past the whole image, so the slice bounds below would
# go negative and count from the other end. Those offsets are all zeros (im2col) or add
# nothing (col2im), so they are handled on their own and never shifted (:func:`_reaches_image`).
def _is_same_size(g: ConvGeometry) -> bool:
    return g.sh == 1 and g.sw == 1 and g.Ho == g.H and g.Wo == g.W


def _reaches_image(g: ConvGeometry, i, j) -> bool:
    """Whether kernel offset (i, j) of a "same"-size window reads at least one pixel of the image,
    i.e. its shift (dy, dx) = (i - top, j - left) has |dy| < H and |dx| < W."""
    return abs(i - g.pads[0]) < g.H and abs(j - g.pads[2]) < g.W


def _im2col_same_size(x, g: ConvGeometry, chunk_bytes=1 << 20):
    """:func:`im2col` with ``merge_batch=True`` for "same"-size windows, by flat shifts.

    x: (N, C, H, W) -> cols (C*kh*kw, N*H*W). Channels are done a few at a time
    (about ``chunk_bytes`` of ``cols``), so that the copies write memory in order.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    kh, kw, HW = g.kh, g.kw, H * W
    top, _, left, _ = g.pads
    cols = xp.empty((C, kh, kw, N, HW), dtype=x.dtype)
    source = x.reshape(N, C, HW).transpose(1, 0, 2)                   # (C, N, H*W), a view
    step = max(1, chunk_bytes // max(1, kh * kw * N * HW * x.itemsize))   # N = 0: one empty block
    for c0 in range(0, C, step):
        block, src = cols[c0:c0 + step], source[c0:c0 + step]
        for i in range(kh):
            dy = i - top
            for j in range(kw):
                if not _reaches_image(g, i, j):    # only padding under this offset
                    block[:, i, j] = 0
                    continue
                if dy < 0:    # the first -dy rows read the top padding
                    block[:, i, j, :, :-dy * W] = 0
                elif dy > 0:  # the last dy rows read the bottom padding
                    block[:, i, j, :, HW - dy * W:] = 0
                shift = dy * W + (j - left)
                lo, hi = max(0, -shift), HW - max(0, shift)
                block[:, i, j, :, lo:hi] = src[:, :, lo + shift:hi + shift]
        grid = block.reshape(block.shape[0], kh, kw, N, H, W)
        for j in range(kw):
            dx = j - left
            if abs(dx) >= W:
                continue      # already all zeros
            if dx > 0:    # wrapped reads of the right padding
                grid[:, :, j, :, :, W - dx:] = 0
            elif dx < 0:  # wrapped reads of the left padding
                grid[:, :, j, :, :, :-dx] = 0
    return cols.reshape(C * kh * kw, N * HW)


def _col2im_same_size(cols, g: ConvGeometry, merge_batch, may_overwrite):
    """:func:`col2im` for "same"-size windows, by flat shifted adds. Returns dx (N, C, H, W).

    ``may_overwrite=True`` lets it zero the wrapped entries of ``cols`` (a work array of the
    caller); otherwise the image columns they would land on are saved and restored.
    """
    xp = get_array_module(cols)
    H, W, kh, kw = g.H, g.W, g.kh, g.kw
    HW = H * W
    top, _, left, _ = g.pads
    if merge_batch:
        C, N = cols.shape[0] // (kh * kw), cols.shape[1] // HW
        grids = cols.reshape(C, kh, kw, N, H, W).transpose(1, 2, 0, 3, 4, 5)   # (kh, kw, C, N, H, W)
    else:
        N, C = cols.shape[0], cols.shape[1] // (kh * kw)
        grids = cols.reshape(N, C, kh, kw, H, W).transpose(2, 3, 1, 0, 4, 5)   # (kh, kw, C, N, H, W)
    per_offset = grids.reshape(kh, kw, C, N, HW)        # merging the last two axes: still a view
    dx = xp.empty((N, C, H, W), dtype=cols.dtype)
    acc = dx.reshape(N, C, HW).transpose(1, 0, 2)                  # (C, N, H*W) view of dx
    acc[...] = per_offset[top, left]                                # the centre offset: no shift
    # Offsets in groups of equal horizontal shift dx, so that the wrap fix is done once per group.
    for dx_shift in sorted({j - left for j in range(kw) if abs(j - left) < W}, key=abs):
        js = [j for j in range(kw) if j - left == dx_shift]
        protect = None
        if dx_shift != 0:
            wrapped = slice(W - dx_shift, W) if dx_shift > 0 else slice(0, -dx_shift)   # source columns
            landing = slice(0, dx_shift) if dx_shift > 0 else slice(W + dx_shift, W)    # where they land
            if may_overwrite:
                for j in js:
                    grids[:, j, ..., wrapped] = 0
            else:
                protect = dx[..., landing].copy()
        for i in range(kh):
            for j in js:
                if (i, j) == (top, left) or not _reaches_image(g, i, j):
                    continue
                shift = (i - top) * W + (j - left)
                lo, hi = max(0, -shift), HW - max(0, shift)
                target = acc[:, :, lo + shift:hi + shift]
                xp.add(target, per_offset[i, j, :, :, lo:hi], out=target)
        if protect is not None:  # these columns get nothing from this group's offsets
            dx[..., landing] = protect
    return dx


# ------------------------------------------------------------ convolution
class Conv2dCache(NamedTuple):
    """What :func:`conv2d_backward` needs: the im2col columns of the input (im2col) or its transformed
    tiles (Winograd), the weight, whether there is a bias, x's shape, the stride and padding as given to
    :func:`conv2d_forward`, and the algorithm that ran."""
    cols: object        # im2col: (C*kh*kw, N*Ho*Wo), the merged layout; None after Winograd
    weight: object      # (K, C, kh, kw)
    has_bias: bool
    x_shape: tuple      # (N, C, H, W)
    stride: object
    padding: object
    algorithm: str = "im2col"   # "im2col", "winograd" or "winograd4", never "auto"
    tiles: object = None        # Winograd F(m x m, 3 x 3): the transformed input tiles (t², C, tiles*N), eq. W5


def _check_conv_inputs(x, weight, bias):
    xp = get_array_module(x, weight, bias)
    if x.ndim != 4:
        raise ValueError(f"conv2d expects x of shape (N, C, H, W), got {tuple(x.shape)}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d expects weight of shape (K, C, kh, kw), got {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: x has {x.shape[1]} channels (shape {tuple(x.shape)}) but the weight "
                         f"{tuple(weight.shape)} expects {weight.shape[1]}")
    if x.dtype.kind != "f":
        raise TypeError(f"conv2d needs a floating-point x, got {x.dtype}")
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError(f"conv2d: x is {x.dtype} but weight/bias are {weight.dtype}/"
                        f"{None if bias is None else bias.dtype}; cast one side (module.double() / .float())")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    return xp


def conv2d_forward(x, weight, bias, stride=1, padding=0, *, algorithm="auto"):
    """Convolution (cross-correlation, eq. C1) by im2col + one GEMM (eqs. C4, C5), or by Winograd.

    Inputs:
    - x: (N, C, H, W)
    - weight: (K, C, kh, kw)
    - bias: (K,) or None
    - stride: int or (sh, sw); padding: int, (ph, pw), "same" or "valid" (torch's meaning)
    - algorithm: "im2col", "winograd" (F(2x2, 3x3)), "winograd4" (F(4x4, 3x3); both 3x3, stride 1:
      :mod:`minigru.functional.winograd`, eqs. W5-W12) or "auto": Winograd F(2x2, 3x3) where it is valid and
      measured faster (:func:`~minigru.functional.winograd.conv_algorithm`)

    Returns (out, cache):
    - out: (N, K, Ho, Wo), Ho = (H + 2*ph - kh) // sh + 1, Wo likewise
    - cache: a :class:`Conv2dCache` (cols (C*kh*kw, N*Ho*Wo), weight, has_bias, x_shape, stride, padding,
      algorithm, tiles)
    """
    xp = _check_conv_inputs(x, weight, bias)
    K, C, kh, kw = weight.shape
    N = x.shape[0]
    g = conv_geometry(x.shape, (kh, kw), stride, padding)
    chosen = conv_algorithm(algorithm, (kh, kw), (g.sh, g.sw), C, K, N)
    if chosen in WINOGRAD_OUTPUT_BLOCK:
        out, tiles = winograd_conv2d_forward(x, weight, bias, g.pads, m=WINOGRAD_OUTPUT_BLOCK[chosen])
        return out, Conv2dCache(None, weight, bias is not None, tuple(x.shape), stride, padding, chosen, tiles)
    cols = im2col(x, kh, kw, stride, padding, merge_batch=True)    # (C*kh*kw, N*Ho*Wo)
    w_mat = weight.reshape(K, C * kh * kw)
    out_mat = xp.empty((K, N * g.Ho * g.Wo), dtype=x.dtype)   # fresh: see "Memory" in the module docstring
    out = xp.empty((N, K, g.Ho, g.Wo), dtype=x.dtype)
    ### HINT: out_mat = w_mat @ cols (eq. C5) is (K, N*Ho*Wo); its columns are ordered (n, a, b), so
    ### HINT: reshape it to (K, N, Ho, Wo), move the batch axis first and add bias[k] (if not None) into out.
    ### BEGIN SOLUTION
    xp.matmul(w_mat, cols, out=out_mat)
    out_images = out_mat.reshape(K, N, g.Ho, g.Wo).transpose(1, 0, 2, 3)
    if bias is not None:
        xp.add(out_images, bias.reshape(1, K, 1, 1), out=out)
    else:
        out[...] = out_images
    ### END SOLUTION
    return out, Conv2dCache(cols, weight, bias is not None, tuple(x.shape), stride, padding)


def conv2d_backward(dout, cache, need_dx=True):
    """Gradients of :func:`conv2d_forward` (eqs. C6-C9).

    Inputs:
    - dout: (N, K, Ho, Wo), gradient of the loss with respect to ``out``
    - cache: the :class:`Conv2dCache` from conv2d_forward
    - need_dx: False skips the input gradient (e.g. for the first layer) and returns dx=None

    Returns (dx, dweight, dbias):
    - dx: (N, C, H, W)       = col2im(W_mat^T @ dout_mat)        (eqs. C8, C9)
    - dweight: (K, C, kh, kw) = dout_mat @ cols^T                 (eq. C6)
    - dbias: (K,) or None     = sum of dout over n, a, b          (eq. C7)
    where dout_mat: (K, N*Ho*Wo) is dout with the batch axis moved after K. After a Winograd forward pass
    (``cache.algorithm`` "winograd" or "winograd4") dx and dweight are Winograd's too (eqs. W8, W9), from the saved
    transformed input tiles (:func:`~minigru.functional.winograd.winograd_conv2d_backward`).
    """
    cols, weight, has_bias, x_shape = cache.cols, cache.weight, cache.has_bias, cache.x_shape
    stride, padding = cache.stride, cache.padding
    saved = cols if cache.algorithm == "im2col" else cache.tiles
    xp = get_array_module(dout, saved)
    K, C, kh, kw = weight.shape
    N = x_shape[0]
    g = conv_geometry(x_shape, (kh, kw), stride, padding)
    check_grad_shape("conv2d_backward", "dout", dout, (N, K, g.Ho, g.Wo))
    if dout.dtype != saved.dtype:
        raise TypeError(f"conv2d_backward: dout is {dout.dtype} but the forward pass ran in {saved.dtype}")
    if cache.algorithm in WINOGRAD_OUTPUT_BLOCK:
        return winograd_conv2d_backward(dout, saved, weight, x_shape, g.pads, has_bias, need_dx,
                                        m=WINOGRAD_OUTPUT_BLOCK[cache.algorithm])
    w_mat = weight.reshape(K, C * kh * kw)
    dout_mat = xp.empty((K, N, g.Ho, g.Wo), dtype=cols.dtype)
    dout_mat[...] = dout.transpose(1, 0, 2, 3)
    dout_mat = dout_mat.reshape(K, N * g.Ho * g.Wo)
    dcols = xp.empty(cols.shape, dtype=cols.dtype) if need_dx else None
    ### HINT: dweight = dout_mat @ cols^T reshaped like weight (eq. C6); dbias = row sums of dout_mat
    ### HINT: (eq. C7), None if not has_bias; dcols = w_mat^T @ dout_mat (eq. C8), if need_dx.
    ### BEGIN SOLUTION
    # (cols @ dout_mat^T)^T is the same product; BLAS runs it ~25% faster in this orientation.
    dweight = xp.ascontiguousarray(xp.matmul(cols, dout_mat.T).T).reshape(weight.shape)
    dbias = dout_mat.sum(axis=1) if has_bias else None
    if need_dx:
        xp.matmul(w_mat.T, dout_mat, out=dcols)
    ### END SOLUTION
    dx = None
    if need_dx and _is_same_size(g):   # dcols is a work array: its wrapped entries may be zeroed
        dx = _col2im_same_size(dcols, g, merge_batch=True, may_overwrite=True)
    elif need_dx:
        dx = col2im(dcols, x_shape, kh, kw, stride, padding, merge_batch=True)
    return dx, dweight, dbias
