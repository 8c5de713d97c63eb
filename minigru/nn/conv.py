"""Conv2d: a 2-D convolution layer with torch's names, arguments and weight layout (docs/derivations.md §C)."""
from __future__ import annotations

from .. import backend
from .. import functional as F
from .._checks import check_image_input, pair
from ..functional.conv import conv_geometry
from ..functional.winograd import conv_algorithm
from . import init
from .module import Module

__all__ = ["Conv2d"]


class Conv2d(Module):
    """2-D convolution (cross-correlation, eq. C1) computed by im2col + GEMM (eqs. C4-C9).

    Input (N, in_channels, H, W) -> output (N, out_channels, Ho, Wo) with
    Ho = (H + 2*padding - kh) // stride + 1. Parameters as torch's: ``weight``
    (out_channels, in_channels, kh, kw) and ``bias`` (out_channels,), both from
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels*kh*kw.
    ``kernel_size`` and ``stride``: int or (h, w); ``padding``: int, (h, w),
    ``"same"`` (stride 1) or ``"valid"``.

    ``input_grad=False`` (not in torch, where autograd knows whether the input
    needs a gradient) makes ``backward`` skip the input gradient and return
    None: use it for the first layer of a network, whose input is the data.
    That saves a GEMM and a col2im, about a third of the layer's backward pass.
    It can also be switched later: ``conv.input_grad = False``.

    ``algorithm`` (not in torch, whose backends choose for themselves): ``"im2col"``, ``"winograd"``
    (Winograd F(2x2, 3x3): 2.25x fewer multiplies), ``"winograd4"`` (Winograd F(4x4, 3x3): 4x fewer, with
    larger rounding errors in float32; docs/derivations.md §W; both for 3x3 kernels with stride 1 only,
    else a ValueError) or ``"auto"``, the default: Winograd F(2x2, 3x3) for 3x3 stride-1 layers with at
    least :func:`~minigru.functional.winograd.winograd_min_channels` input and output channels (64, or 128
    where NumPy's BLAS runs AVX-512 kernels), on batches of at least
    :data:`~minigru.functional.winograd.WINOGRAD_MIN_BATCH` images, where it measured faster, im2col otherwise
    (``"auto"`` never picks ``"winograd4"``). All compute the same function (to rounding).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True,
                 *, input_grad: bool = True, algorithm: str = "auto", rng=None, dtype=None):
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"Conv2d needs positive channel counts, got in_channels={in_channels}, "
                             f"out_channels={out_channels}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding")
        self.input_grad = bool(input_grad)
        # checks kernel, stride and padding now rather than at the first forward
        conv_geometry((1, in_channels, *self.kernel_size), self.kernel_size, self.stride, self.padding)
        # checks the choice now (the batch size of the later inputs does not matter for that)
        conv_algorithm(algorithm, self.kernel_size, self.stride, in_channels, out_channels, batch=1)
        self.algorithm = algorithm
        kh, kw = self.kernel_size
        rng = backend.make_rng(rng)  # one Generator for both draws
        bound = init.fan_in_bound(in_channels * kh * kw)
        self.weight = init.uniform(rng, (out_channels, in_channels, kh, kw), bound, dtype)
        self.bias = init.uniform(rng, (out_channels,), bound, dtype) if bias else None

    def forward(self, x):
        check_image_input(self, x, self.in_channels, self.weight.dtype)
        try:
            conv_geometry(x.shape, self.kernel_size, self.stride, self.padding)
        except ValueError as err:
            raise ValueError(f"{self!r}: {err}") from None
        out, cache = F.conv2d_forward(x, self.weight.data, None if self.bias is None else self.bias.data,
                                      self.stride, self.padding, algorithm=self.algorithm)
        self._save_cache(cache)
        return out

    def backward(self, dout):
        dx, dweight, dbias = F.conv2d_backward(dout, self._pop_cache(), need_dx=self.input_grad)
        self.weight.grad += dweight
        if self.bias is not None:
            self.bias.grad += dbias
        return dx

    def extra_repr(self):
        padding = repr(self.padding) if isinstance(self.padding, str) else self.padding
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={padding}" + ("" if self.bias is not None else ", bias=False")
                + ("" if self.input_grad else ", input_grad=False")
                + ("" if self.algorithm == "auto" else f", algorithm={self.algorithm!r}"))
