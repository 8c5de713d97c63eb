"""PatchWhitening: a frozen first convolution that whitens the image's k x k patches (airbench).

Neighbouring pixels are strongly correlated, so the raw k x k x C patches a
first convolution reads vary mostly along a few directions (smooth colour
blobs) and hardly along the others (fine edges). Gradient descent then crawls
along the weak directions. Whitening turns the patches into uncorrelated
coordinates of unit variance, so that every direction starts equally loud
(Keller Jordan's airbench, after Coates & Ng's "whitened patches" features).

Let p ∈ R^D (D = C·k·k) be a patch of the training images, in im2col's order
``(c, i, j)``, and Σ = Cov(p) = V Λ Vᵀ its eigendecomposition. The filters are
the rows of (docs/derivations.md eq. WH1)::

    W = Λ^{-1/2}_ε Vᵀ,  (Λ_ε)_dd = λ_d + ε                          (WH1)
    Cov(W p) = W Σ Wᵀ = Λ (Λ + ε)^{-1} ≈ I                          (WH2)

ε keeps the weakest directions (pure noise, λ → 0) from being amplified
without bound. With ``negate=True`` the layer also outputs ``-W p``: a ReLU
after it then keeps both signs of every coordinate (airbench's 2·D channels).

The filters are *fixed*: they live in a buffer (saved in ``state_dict``, never
seen by an optimizer), set once by :meth:`PatchWhitening.fit` from training
images. ``backward`` still returns the gradient with respect to the input
(the transposed convolution of eq. C8), so the layer can sit anywhere.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from .._checks import check_image_input, pair
from ..functional.conv import conv_geometry
from .module import Module

__all__ = ["PatchWhitening", "patch_covariance", "whitening_filters"]


def patch_covariance(x, kernel_size, chunk: int = 256):
    """The (D, D) covariance (float64, NumPy) of all k x k patches of images ``x`` (N, C, H, W), D = C·kh·kw.

    Patches are taken without padding (only real pixels), in im2col's order (c, i, j). The images are read
    ``chunk`` at a time, so that 5,000 CIFAR images (4.8 million patches) need a few tens of MB, not GB; the
    sums are taken around the first chunk's mean, which keeps E[ppᵀ] - μμᵀ free of cancellation.
    """
    kh, kw = pair(kernel_size, "kernel_size")
    count, shift, total, outer = 0, None, 0.0, 0.0
    for start in range(0, x.shape[0], chunk):
        cols = backend.to_numpy(F.im2col(x[start:start + chunk], kh, kw, 1, 0, merge_batch=True))
        cols = cols.astype(np.float64)                                      # (D, patches of this chunk)
        if shift is None:
            shift = cols.mean(axis=1, keepdims=True)
        cols -= shift
        count += cols.shape[1]
        total = total + cols.sum(axis=1)
        outer = outer + cols @ cols.T
    mean = total / count
    return outer / count - np.outer(mean, mean)


def whitening_filters(covariance, in_channels, kernel_size, eps):
    """Filters (D, C, kh, kw) of eq. WH1 from a patch covariance (D, D), strongest direction first (float64)."""
    kh, kw = pair(kernel_size, "kernel_size")
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)       # ascending
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)          # round-off can make a zero slightly negative
    filters = eigenvectors[:, order].T / np.sqrt(eigenvalues + eps)[:, None]
    return filters.reshape(-1, in_channels, kh, kw)


class PatchWhitening(Module):
    """Fixed convolution whose filters whiten the k x k patches of the training images (eqs. WH1-WH2).

    Parameters
    ----------
    in_channels : image channels C.
    kernel_size : k (int or (kh, kw)); airbench uses 2.
    stride : as Conv2d's; stride = k whitens non-overlapping patches (a "patchify" stem: the output is k times
        smaller, and still holds every pixel, as the D whitened coordinates of each patch).
    padding : as Conv2d's (0 and stride 1: the output is (H - k + 1) x (W - k + 1)).
    eps : ε of eq. WH1, added to every eigenvalue (in the units of the input's variance).
    negate : also output the negated channels, for a ReLU after the layer.
    dtype : of the filters (float32 default).

    Shapes: x (N, C, H, W) -> (N, out_channels, Ho, Wo), out_channels = C·kh·kw, doubled with ``negate``.
    Buffers: ``weight`` (out_channels, C, kh, kw) and ``fitted`` (0-d int64, 1 after :meth:`fit`). No parameters.
    """

    def __init__(self, in_channels: int = 3, kernel_size=2, stride=1, padding=0, eps: float = 5e-4,
                 negate: bool = True, *, dtype=None):
        super().__init__()
        if int(in_channels) < 1:
            raise ValueError(f"PatchWhitening needs in_channels >= 1, got {in_channels}")
        if not float(eps) > 0:
            raise ValueError(f"PatchWhitening: eps must be positive (it bounds the gain of the weakest "
                             f"directions), got {eps}")
        self.in_channels = int(in_channels)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding")
        conv_geometry((1, self.in_channels, *self.kernel_size), self.kernel_size, self.stride, self.padding)
        self.eps = float(eps)
        self.negate = bool(negate)
        kh, kw = self.kernel_size
        directions = self.in_channels * kh * kw
        self.out_channels = directions * (2 if self.negate else 1)
        xp = backend.get_xp()
        dt = np.dtype(np.float32 if dtype is None else dtype)
        self.register_buffer("weight", xp.zeros((self.out_channels, self.in_channels, kh, kw), dtype=dt))
        self.register_buffer("fitted", xp.zeros((), dtype=np.int64))

    def fit(self, x) -> "PatchWhitening":
        """Set the filters from images ``x`` (N, C, H, W), normalised as the training data will be; returns self.

        A few thousand images are plenty: the covariance has only D·(D+1)/2 entries (78 for 3 x 2 x 2).
        The covariance is taken over all patches (stride 1), whatever the layer's stride.
        """
        check_image_input(self, x, self.in_channels)
        kh, kw = self.kernel_size
        if x.shape[2] < kh or x.shape[3] < kw:
            raise ValueError(f"PatchWhitening.fit: images of {x.shape[2]}x{x.shape[3]} have no "
                             f"{kh}x{kw} patches")
        filters = whitening_filters(patch_covariance(x, self.kernel_size), self.in_channels, self.kernel_size,
                                    self.eps)
        if self.negate:
            filters = np.concatenate([filters, -filters])
        self.weight = backend.to_backend(filters, backend.backend_of(self.weight), dtype=self.weight.dtype)
        self.fitted = backend.to_backend(np.asarray(1, dtype=np.int64), backend.backend_of(self.weight))
        return self

    def forward(self, x):
        if not int(self.fitted):
            raise RuntimeError("PatchWhitening has no filters yet: call .fit(training_images) first (a model "
                               "built with it does this in initialize_from_data)")
        check_image_input(self, x, self.in_channels, self.weight.dtype)
        out, cache = F.conv2d_forward(x, self.weight, None, self.stride, self.padding)
        self._save_cache(cache)
        return out

    def backward(self, dout):
        """dout (N, out_channels, Ho, Wo) -> dx (N, C, H, W); the filters get no gradient (they are fixed)."""
        dx, _, _ = F.conv2d_backward(dout, self._pop_cache(), need_dx=True)
        return dx

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, "
                f"eps={self.eps}, negate={self.negate}" + ("" if int(self.fitted) else ", not fitted"))
