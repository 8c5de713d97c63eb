"""Pooling layers with torch's names and arguments: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d (docs/derivations.md §P)."""
from __future__ import annotations

from .. import functional as F
from ..functional.conv import _pair
from .conv import check_image_input
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


class _Pool2d(Module):
    """Shared arguments: kernel_size, stride (default: kernel_size) and padding (<= kernel/2), ints or pairs."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        kh, kw = _pair(kernel_size, "kernel_size")
        ph, pw = _pair(padding, "padding")
        if 2 * ph > kh or 2 * pw > kw or ph < 0 or pw < 0:
            raise ValueError(f"{type(self).__name__}: padding should be between 0 and half of the kernel size "
                             f"(as in torch), got padding={padding!r} and kernel_size={kernel_size!r}")
        _pair(self.stride, "stride")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Maximum over each window (eq. P1); the gradient goes to the window's first maximum (eq. P2), as torch.

    Input (N, C, H, W) -> output (N, C, Ho, Wo), Ho = (H + 2*padding - kh) // stride + 1.
    Padding counts as -inf.
    """

    def forward(self, x):
        check_image_input(self, x)
        out, cache = F.maxpool2d_forward(x, self.kernel_size, self.stride, self.padding)
        self._save_cache(cache)
        return out

    def backward(self, dout):
        return F.maxpool2d_backward(dout, self._pop_cache())


class AvgPool2d(_Pool2d):
    """Mean over each window (eqs. P3, P4); padded zeros count in the divisor (torch's count_include_pad=True)."""

    def forward(self, x):
        check_image_input(self, x)
        out, cache = F.avgpool2d_forward(x, self.kernel_size, self.stride, self.padding)
        self._save_cache(cache)
        return out

    def backward(self, dout):
        return F.avgpool2d_backward(dout, self._pop_cache())


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed ``output_size`` (int, (h, w), None entries keep that size) (eqs. P5-P7).

    ``AdaptiveAvgPool2d(1)`` is global average pooling: (N, C, H, W) -> (N, C, 1, 1).
    Other sizes must divide H and W (then the result equals torch's).
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        check_image_input(self, x)
        out, cache = F.adaptive_avgpool2d_forward(x, self.output_size)
        self._save_cache(cache)
        return out

    def backward(self, dout):
        return F.adaptive_avgpool2d_backward(dout, self._pop_cache())

    def extra_repr(self):
        return f"output_size={self.output_size}"
