"""Pooling layers with torch's names and arguments: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d (docs/derivations.md §P)."""
from __future__ import annotations

from .. import functional as F
from .._checks import check_image_input, pair
from .activation import ReLU
from .linear import Identity
from .module import Module, Sequential

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "fuse_relu_maxpool"]


class _Pool2d(Module):
    """Shared arguments: kernel_size, stride (default: kernel_size) and padding (<= kernel/2), ints or pairs."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        kh, kw = pair(kernel_size, "kernel_size")
        ph, pw = pair(padding, "padding")
        if 2 * ph > kh or 2 * pw > kw or ph < 0 or pw < 0:
            raise ValueError(f"{type(self).__name__}: padding should be between 0 and half of the kernel size "
                             f"(as in torch), got padding={padding!r} and kernel_size={kernel_size!r}")
        pair(self.stride, "stride")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Maximum over each window (eq. P1); the gradient goes to the window's first maximum (eq. P2), as torch.

    Input (N, C, H, W) -> output (N, C, Ho, Wo), Ho = (H + 2*padding - kh) // stride + 1.
    Padding counts as -inf.

    ``relu=True`` (not in torch) outputs max(pool(x), 0), which equals
    ``MaxPool2d(ReLU(x))`` with the same gradients, at a quarter of the ReLU's
    cost for 2x2 windows; :func:`fuse_relu_maxpool` rewrites a model's
    ``ReLU, MaxPool2d`` pairs that way.
    """

    def __init__(self, kernel_size, stride=None, padding=0, *, relu: bool = False):
        super().__init__(kernel_size, stride, padding)
        self.relu = bool(relu)

    def forward(self, x):
        check_image_input(self, x)
        out, cache = F.maxpool2d_forward(x, self.kernel_size, self.stride, self.padding, relu=self.relu)
        self._save_cache(cache)
        return out

    def backward(self, dout):
        return F.maxpool2d_backward(dout, self._pop_cache())

    def extra_repr(self):
        return super().extra_repr() + (", relu=True" if self.relu else "")


def fuse_relu_maxpool(module: Module) -> int:
    """Fuse every ``ReLU`` next to a ``MaxPool2d`` inside a Sequential of ``module``, in place; returns
    how many pairs were fused.

    ``ReLU, MaxPool2d`` and ``MaxPool2d, ReLU`` both become ``Identity`` in the ReLU's place and
    ``MaxPool2d(..., relu=True)``. The outputs and all gradients stay the same (ReLU is
    increasing, so it commutes with a maximum; see docs/performance.md), and so do the state
    dict keys (neither layer has parameters, and the Sequential keeps its numbering). The
    ReLU then runs on the pooled image (kh*kw times smaller than the convolution output, for
    the first order) without a separate array and pass of its own (both orders).
    """
    fused = 0
    for layer in module.modules():
        if not isinstance(layer, Sequential):
            continue
        names = list(layer._modules)
        for first, second in zip(names, names[1:]):
            a, b = layer._modules[first], layer._modules[second]
            for relu_name, relu, pool in ((first, a, b), (second, b, a)):
                if type(relu) is ReLU and type(pool) is MaxPool2d and not pool.relu:
                    layer._modules[relu_name] = Identity()
                    pool.relu = True
                    fused += 1
                    break
    return fused


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
    Any other size uses torch's windows (output row a averages input rows
    [floor(a*H/Ho), ceil((a+1)*H/Ho)), columns likewise), also when it does not divide
    the input or exceeds it.
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
