"""Conv2d: a 2-D convolution layer with torch's names, arguments and weight layout (docs/derivations.md §C)."""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from ..functional.conv import _pair, conv_geometry
from . import init
from .module import Module

__all__ = ["Conv2d"]


def check_image_input(layer: Module, x, channels=None, dtype=None):
    """Clear errors for a layer input that is not a (N, C, H, W) floating array (with ``channels`` and ``dtype``)."""
    name = type(layer).__name__
    backend.backend_of(x)  # TypeError naming a non-array (with a hint for torch tensors)
    expected = f"(N, {channels}, H, W)" if channels is not None else "(N, C, H, W)"
    if x.ndim != 4:
        hint = ": add a batch axis with x[None]" if x.ndim == 3 else ""
        raise ValueError(f"{name} expected input of shape {expected}, got {tuple(x.shape)}{hint}")
    if channels is not None and x.shape[1] != channels:
        hint = ": channels-last input? use x.transpose(0, 3, 1, 2)" if x.shape[3] == channels else ""
        raise ValueError(f"{name} expected input of shape {expected}, got {tuple(x.shape)}{hint}")
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(f"{name} expected a floating-point input, got dtype {x.dtype} "
                        f"(images as uint8? convert with x.astype(np.float32) / 255)")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has {np.dtype(dtype)} parameters but got a {x.dtype} input; cast the data "
                        f"with x.astype(np.{np.dtype(dtype)}) or the model with model.to(np.{x.dtype})")


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
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True,
                 *, input_grad: bool = True, rng=None, dtype=None):
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"Conv2d needs positive channel counts, got in_channels={in_channels}, "
                             f"out_channels={out_channels}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = padding if isinstance(padding, str) else _pair(padding, "padding")
        self.input_grad = bool(input_grad)
        # checks kernel, stride and padding now rather than at the first forward
        conv_geometry((1, in_channels, *self.kernel_size), self.kernel_size, self.stride, self.padding)
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
                                      self.stride, self.padding)
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
                + ("" if self.input_grad else ", input_grad=False"))
