"""The rearrangements of a ReNet layer (Visin et al. 2015), with their backward passes (docs/derivations.md §RN).

A ReNet layer replaces a convolution + pooling by two bidirectional GRU
sweeps over a grid of non-overlapping patches: first along every row of
patches (left to right and right to left), then along every column of the
result (top to bottom and back). The GRUs are minigru's own sequence kernels;
what is left are three pure rearrangements, which this module provides.
Each one only moves numbers, so its backward is the inverse move (eq. RN2):

* :func:`patch_rows_forward` — image (N, C, H, W) -> row sequences (J, N·I, C·ph·pw)  (eq. RN1)
* :func:`rows_to_columns_forward` — (J, N·I, F) -> column sequences (I, N·J, F)          (eq. RN4)
* :func:`columns_to_image_forward` — (I, N·J, F) -> image (N, F, I, J)                    (eq. RN6)

with I = H/ph rows and J = W/pw columns of patches. Every row of every image
is one sequence of the GRU batch (N·I of them, J steps long); every column is
one sequence of the second GRU's batch (N·J of them, I steps long).
"""
from __future__ import annotations

from typing import NamedTuple

from .._checks import check_grad_shape, pair
from ..backend import get_array_module

__all__ = ["patch_rows_forward", "patch_rows_backward", "rows_to_columns_forward", "rows_to_columns_backward",
           "columns_to_image_forward", "columns_to_image_backward", "patch_grid", "PatchRowsCache", "RenetRegroupCache"]


class PatchRowsCache(NamedTuple):
    """What :func:`patch_rows_backward` needs: the input's shape (N, C, H, W) and the patch size."""
    x_shape: tuple
    ph: int
    pw: int


class RenetRegroupCache(NamedTuple):
    """The grid of a ReNet regrouping: N images, I patch rows, J patch columns, F features."""
    images: int
    rows: int
    columns: int
    features: int


def _contiguous(xp, view):
    """A fresh C-contiguous copy of ``view`` (so later in-place work never reaches the caller's array)."""
    out = xp.empty(view.shape, dtype=view.dtype)
    out[...] = view
    return out


def patch_rows_forward(x, patch_size):
    """Cut x into non-overlapping patches and lay every row of patches out as one sequence (eq. RN1).

    x: (N, C, H, W) with H divisible by ph and W by pw; patch_size: int or (ph, pw).
    Returns ``(rows, cache)`` with rows: (J, N·I, C·ph·pw), I = H/ph, J = W/pw:
    ``rows[j, n·I + i] = x[n, :, i·ph:(i+1)·ph, j·pw:(j+1)·pw].reshape(-1)`` (channel, then
    patch row, then patch column: the order of a Conv2d weight's (C, kh, kw)).
    """
    xp = get_array_module(x)
    ph, pw = pair(patch_size, "patch_size")
    if x.ndim != 4:
        raise ValueError(f"patch_rows: x must have shape (N, C, H, W), got {tuple(x.shape)}")
    N, C, H, W = x.shape
    if ph < 1 or pw < 1 or H % ph or W % pw:
        raise ValueError(f"patch_rows: the {H}x{W} image cannot be cut into {ph}x{pw} patches; H and W must be "
                         f"multiples of the patch size (crop or pad the input)")
    I, J = H // ph, W // pw
    # (N, C, I, ph, J, pw) -> (J, N, I, C, ph, pw): the sequence axis j first, then the batch (n, i)
    view = x.reshape(N, C, I, ph, J, pw).transpose(4, 0, 2, 1, 3, 5)
    rows = _contiguous(xp, view).reshape(J, N * I, C * ph * pw)
    return rows, PatchRowsCache(tuple(x.shape), ph, pw)


def patch_rows_backward(drows, cache):
    """The inverse rearrangement of :func:`patch_rows_forward` (eq. RN2): drows (J, N·I, C·ph·pw) -> dx (N, C, H, W).

    Every input pixel lands in exactly one patch, so its gradient is that patch entry's gradient.
    """
    (N, C, H, W), ph, pw = cache.x_shape, cache.ph, cache.pw
    I, J = H // ph, W // pw
    check_grad_shape("patch_rows_backward", "drows", drows, (J, N * I, C * ph * pw))
    xp = get_array_module(drows)
    view = drows.reshape(J, N, I, C, ph, pw).transpose(1, 3, 2, 4, 0, 5)    # (N, C, I, ph, J, pw)
    return _contiguous(xp, view).reshape(N, C, H, W)


def rows_to_columns_forward(h_rows, images, rows):
    """Regroup the horizontal sweep's outputs by column (eq. RN4).

    h_rows: (J, N·I, F), ``h_rows[j, n·I + i]`` the feature vector of patch (i, j) of image n;
    images: N; rows: I. Returns ``(h_cols, cache)`` with h_cols: (I, N·J, F),
    ``h_cols[i, n·J + j] = h_rows[j, n·I + i]``.
    """
    xp = get_array_module(h_rows)
    J, NI, F = h_rows.shape
    if NI != images * rows:
        raise ValueError(f"rows_to_columns: h_rows has {NI} sequences, expected N·I = {images}·{rows}")
    view = h_rows.reshape(J, images, rows, F).transpose(2, 1, 0, 3)           # (I, N, J, F)
    return _contiguous(xp, view).reshape(rows, images * J, F), RenetRegroupCache(images, rows, J, F)


def rows_to_columns_backward(dh_cols, cache):
    """Inverse of :func:`rows_to_columns_forward` (eq. RN2): dh_cols (I, N·J, F) -> dh_rows (J, N·I, F)."""
    images, rows, J, F = cache
    check_grad_shape("rows_to_columns_backward", "dh_cols", dh_cols, (rows, images * J, F))
    xp = get_array_module(dh_cols)
    view = dh_cols.reshape(rows, images, J, F).transpose(2, 1, 0, 3)          # (J, N, I, F)
    return _contiguous(xp, view).reshape(J, images * rows, F)


def columns_to_image_forward(h_cols, images):
    """The vertical sweep's outputs as a feature map (eq. RN6).

    h_cols: (I, N·J, F), ``h_cols[i, n·J + j]`` the features of patch (i, j) of image n; images: N.
    Returns ``(out, cache)`` with out: (N, F, I, J), ``out[n, :, i, j] = h_cols[i, n·J + j]``.
    """
    xp = get_array_module(h_cols)
    I, NJ, F = h_cols.shape
    if NJ % images:
        raise ValueError(f"columns_to_image: {NJ} column sequences do not split into {images} images")
    J = NJ // images
    view = h_cols.reshape(I, images, J, F).transpose(1, 3, 0, 2)              # (N, F, I, J)
    return _contiguous(xp, view), RenetRegroupCache(images, I, J, F)


def columns_to_image_backward(dout, cache):
    """Inverse of :func:`columns_to_image_forward` (eq. RN2): dout (N, F, I, J) -> dh_cols (I, N·J, F)."""
    images, I, J, F = cache
    check_grad_shape("columns_to_image_backward", "dout", dout, (images, F, I, J))
    xp = get_array_module(dout)
    view = dout.transpose(2, 0, 3, 1)                                         # (I, N, J, F)
    return _contiguous(xp, view).reshape(I, images * J, F)


def patch_grid(image_size, patch_size):
    """(I, J): the number of patch rows and columns of an (H, W) image; a ValueError if they do not divide."""
    ph, pw = pair(patch_size, "patch_size")
    H, W = image_size
    if ph < 1 or pw < 1 or H % ph or W % pw:
        raise ValueError(f"a {H}x{W} image cannot be cut into {ph}x{pw} patches; H and W must be multiples "
                         f"of the patch size")
    return H // ph, W // pw

