"""Convolutional GRU layers (Ballas et al. 2016): ``ConvGRU`` and ``ConvGRUCell`` (docs/derivations.md §CG).

A ConvGRU is a GRU over images: states (C, Ho, Wo) instead of vectors, and
convolutions instead of matrix products. Parameters are named and stacked
like torch's GRU (gates r, z, n): ``weight_ih`` (3C, C_in, kh_i, kw_i),
``weight_hh`` (3C, C, kh, kw), ``bias_ih``, ``bias_hh`` (3C,), with the
``_l{k}`` suffix per layer in ``ConvGRU``. PyTorch has no ConvGRU, so these
state dicts are for minigru (or a hand-written torch twin) only.

``reset_after=False`` (default) is Ballas et al.'s candidate
``n = tanh(W_xn * x + U_hn * (r ⊙ h) + b)`` (eq. CG3); ``reset_after=True``
applies r after the convolution, as torch's GRU does (eq. CG4), which costs
one recurrent convolution per step instead of two. The update is
``h' = (1 − z) ⊙ n + z ⊙ h`` (eq. CG5), as minigru's and torch's GRU.

Initialisation: every weight and bias from U(-1/√(C·kh·kw), 1/√(C·kh·kw)),
the fan-in of the recurrent convolution (torch's GRU uses 1/√H, the fan-in of
its recurrent matrix).
"""
from __future__ import annotations

import math

from .. import backend
from .. import functional as F
from .._checks import check_grad_shape, check_image_input, pair, positive_int
from ..functional.conv import conv_geometry
from ..functional.convgru import convgru_state_size
from . import init
from .module import Module
from ._recurrent import LayerParameters

__all__ = ["ConvGRU", "ConvGRUCell"]


def _out_shape(hs, batched, batch_first):
    """The shape of ConvGRU's ``out`` in the caller's layout, from the time-major states hs (T, N, C, Ho, Wo)."""
    steps, batch = hs.shape[:2]
    if not batched:
        return (steps,) + tuple(hs.shape[2:])
    return ((batch, steps) if batch_first else (steps, batch)) + tuple(hs.shape[2:])


def _odd_kernel(owner, kernel_size):
    kh, kw = pair(kernel_size, "kernel_size")
    if kh < 1 or kw < 1 or kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"{owner}: kernel_size must be odd (the recurrent convolution keeps the state's size "
                         f"with 'same' padding), got {kernel_size!r}")
    return kh, kw


class _ConvGRUParams(Module):
    """Hyper-parameters and the parameter factory shared by ConvGRU and ConvGRUCell."""

    def _setup(self, input_channels, hidden_channels, kernel_size, bias, reset_after, input_kernel_size,
               input_stride, input_padding):
        name = type(self).__name__
        self.input_channels = positive_int(name, "input_channels", input_channels)
        self.hidden_channels = positive_int(name, "hidden_channels", hidden_channels)
        self.kernel_size = _odd_kernel(name, kernel_size)
        self.input_kernel_size = pair(kernel_size if input_kernel_size is None else input_kernel_size,
                                       "input_kernel_size")
        self.input_stride = pair(input_stride, "input_stride")
        kh_i, kw_i = self.input_kernel_size
        self.input_padding = (kh_i // 2, kw_i // 2) if input_padding is None else pair(input_padding,
                                                                                        "input_padding")
        # checks the input convolution's geometry now (raises for a kernel bigger than its padded input)
        conv_geometry((1, 1, kh_i, kw_i), self.input_kernel_size, self.input_stride, self.input_padding)
        self.bias = bool(bias)
        self.reset_after = bool(reset_after)

    def _make(self, rng, suffix, in_channels, kernel, dtype, bound):
        rows = 3 * self.hidden_channels
        setattr(self, "weight_ih" + suffix, init.uniform(rng, (rows, in_channels, *kernel), bound, dtype))
        setattr(self, "weight_hh" + suffix, init.uniform(rng, (rows, self.hidden_channels, *self.kernel_size),
                                                          bound, dtype))
        if self.bias:
            setattr(self, "bias_ih" + suffix, init.uniform(rng, (rows,), bound, dtype))
            setattr(self, "bias_hh" + suffix, init.uniform(rng, (rows,), bound, dtype))

    def _arrays(self, suffix=""):
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [self._parameters[n + suffix].data if n + suffix in self._parameters else None for n in names]

    def _accumulate(self, grads, suffix=""):
        for n, g in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), grads):
            if g is not None:
                self._parameters[n + suffix].grad += g

    def state_size(self, frame_size):
        """(Ho, Wo) of the state for input frames of size (H, W)."""
        return convgru_state_size(frame_size, self._parameters[self._first_weight].data,
                                  self.input_stride, self.input_padding)

    def _check_state(self, what, s, expected, like):
        """The state's backend and its shape in the layer's layout (num_layers stacked, unbatched)."""
        if s is None:
            return None
        backend.backend_of(s)
        if backend.backend_of(s) != backend.backend_of(like):
            raise backend.BackendMismatchError(f"{type(self).__name__}: {what} is a {backend.backend_of(s)} array "
                                               f"but x is {backend.backend_of(like)}")
        if tuple(s.shape) != tuple(expected):
            raise ValueError(f"{type(self).__name__} expected {what} of shape {tuple(expected)}, got {tuple(s.shape)}")
        return s           # its dtype is the kernel's check (convgru_forward / convgru_step_forward)

    def extra_repr(self):
        s = f"{self.input_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}"
        if getattr(self, "num_layers", 1) != 1:
            s += f", num_layers={self.num_layers}"
        if self.input_kernel_size != self.kernel_size:
            s += f", input_kernel_size={self.input_kernel_size}"
        if self.input_stride != (1, 1):
            s += f", input_stride={self.input_stride}"
        kh_i, kw_i = self.input_kernel_size
        if self.input_padding != (kh_i // 2, kw_i // 2):
            s += f", input_padding={self.input_padding}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "batch_first", False):
            s += ", batch_first=True"
        return s + (", reset_after=True" if self.reset_after else "")


class ConvGRU(_ConvGRUParams):
    """Multi-layer ConvGRU over a video, like torch.nn.GRU over a sequence (eqs. CG1-CG5 at every step).

    ``out, h_n = convgru(x, h0=None)``; ``dx, dh0 = convgru.backward(dout, dh_n=None)``
    (either upstream gradient may be None, meaning zero; dh0 is returned even for h0=None).

    Shapes: x (T, N, C_in, H, W), or (N, T, C_in, H, W) with ``batch_first``,
    or unbatched (T, C_in, H, W); out (T, N, C, Ho, Wo) in the same layout,
    the last layer's states; h0, h_n (num_layers, N, C, Ho, Wo). (Ho, Wo) is
    the output size of layer 0's input convolution (``input_kernel_size``,
    default ``kernel_size``; ``input_stride``, default 1; ``input_padding``,
    default kernel//2); layers k > 0 read layer k−1's states with a stride-1,
    'same' convolution of ``kernel_size``. Parameters ``weight_ih_l{k}``
    (3C, C_in or C, kh, kw), ``weight_hh_l{k}`` (3C, C, kh, kw), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (3C,), gates stacked r, z, n.
    """

    _first_weight = "weight_ih_l0"

    def __init__(self, input_channels, hidden_channels, kernel_size, num_layers=1, bias=True, batch_first=False,
                 reset_after=False, input_kernel_size=None, input_stride=1, input_padding=None, *, rng=None,
                 dtype=None):
        super().__init__()
        self._setup(input_channels, hidden_channels, kernel_size, bias, reset_after, input_kernel_size,
                    input_stride, input_padding)
        self.num_layers = positive_int("ConvGRU", "num_layers", num_layers)
        self.batch_first = bool(batch_first)
        rng = backend.make_rng(rng)
        bound = 1.0 / math.sqrt(self.hidden_channels * self.kernel_size[0] * self.kernel_size[1])
        for layer in range(self.num_layers):
            if layer == 0:
                self._make(rng, "_l0", self.input_channels, self.input_kernel_size, dtype, bound)
            else:
                self._make(rng, f"_l{layer}", self.hidden_channels, self.kernel_size, dtype, bound)

    def layer_parameters(self, layer: int) -> LayerParameters:
        """The Parameters ``weight_ih_l{layer}``, ``weight_hh_l{layer}``, ``bias_ih_l{layer}``, ``bias_hh_l{layer}``
        of one layer (0-based) as a :class:`~minigru.nn._recurrent.LayerParameters` (biases None with bias=False)."""
        if not (isinstance(layer, int) and 0 <= layer < self.num_layers):
            raise IndexError(f"ConvGRU: layer must be in 0..{self.num_layers - 1}, got {layer!r}")
        return LayerParameters(*(self._parameters.get(f"{n}_l{layer}")
                                 for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))

    def input_convolution(self, layer: int) -> tuple:
        """``(stride, padding)`` of layer ``layer``'s input convolution: layer 0's are the ``input_stride`` and
        ``input_padding`` arguments, the later layers' are stride 1 and 'same' padding."""
        if layer == 0:
            return self.input_stride, self.input_padding
        return 1, (self.kernel_size[0] // 2, self.kernel_size[1] // 2)

    def _time_major(self, x):
        """(T, N, C_in, H, W) view of x, and whether it was batched."""
        backend.backend_of(x)
        layout = "(N, T, C_in, H, W)" if self.batch_first else "(T, N, C_in, H, W)"
        if x.ndim not in (4, 5):
            raise ValueError(f"ConvGRU expected x of shape {layout} (or unbatched (T, C_in, H, W)), "
                             f"got {x.ndim}-D shape {tuple(x.shape)}")
        steps = x.shape[1] if self.batch_first and x.ndim == 5 else x.shape[0]
        if steps == 0:
            raise ValueError(f"ConvGRU expected at least one time step, got x of shape {tuple(x.shape)} "
                             f"({layout})")
        frames = x[0] if x.ndim == 5 else x      # a 4-D view, for the channel and dtype checks
        check_image_input(self, frames, self.input_channels, self.weight_ih_l0.dtype)
        if backend.backend_of(x) != backend.backend_of(self.weight_ih_l0.data):
            raise backend.BackendMismatchError(f"ConvGRU parameters live on {backend.backend_of(self.weight_ih_l0.data)}"
                                               f" but x is a {backend.backend_of(x)} array; move one of them")
        if x.ndim == 4:
            return x[:, None], False
        return (x.transpose(1, 0, 2, 3, 4) if self.batch_first else x), True

    def forward(self, x, h0=None):
        x_tm, batched = self._time_major(x)
        xp = backend.get_array_module(x_tm)
        batch = x_tm.shape[1]
        Ho, Wo = self.state_size(x_tm.shape[-2:])
        state = (batch, self.hidden_channels, Ho, Wo)
        if h0 is not None:
            h0 = self._check_state("h0", h0, (self.num_layers,) + (state if batched else state[1:]), x_tm)
            h0 = h0 if batched else h0[:, None]
        layer_input, caches, finals = x_tm, [], []
        for layer in range(self.num_layers):
            stride, padding = self.input_convolution(layer)
            hs, cache = F.convgru_forward(layer_input, None if h0 is None else h0[layer],
                                          *self.layer_parameters(layer).arrays(),
                                          stride=stride, padding=padding, reset_after=self.reset_after)
            caches.append(cache)
            finals.append(hs[-1])
            layer_input = hs
        h_n = xp.stack(finals)
        self._save_cache((caches, batched, tuple(_out_shape(layer_input, batched, self.batch_first)),
                          tuple(h_n.shape if batched else h_n[:, 0].shape)))
        out = layer_input
        if not batched:
            return out[:, 0], h_n[:, 0]
        return (out.transpose(1, 0, 2, 3, 4) if self.batch_first else out), h_n

    def backward(self, dout=None, dh_n=None):
        """Gradients (dx, dh0) from dout (out's shape) and dh_n (h_n's shape), either None for zero;
        the parameter gradients are added into ``.grad``."""
        caches, batched, out_shape, h_n_shape = self._pop_cache()
        check_grad_shape("ConvGRU.backward", "dout", dout, out_shape, optional=True)
        check_grad_shape("ConvGRU.backward", "dh_n", dh_n, h_n_shape, optional=True)
        if dout is not None:
            dout = dout[:, None] if not batched else (dout.transpose(1, 0, 2, 3, 4) if self.batch_first else dout)
        if dh_n is not None and not batched:
            dh_n = dh_n[:, None]
        grad, dh0 = dout, []
        for layer in range(self.num_layers - 1, -1, -1):
            dx, dh0_layer, *dparams = F.convgru_backward(grad, None if dh_n is None else dh_n[layer], caches[layer])
            self._accumulate(dparams, f"_l{layer}")
            dh0.append(dh0_layer)
            grad = dx
        xp = backend.get_array_module(grad)
        dh0 = xp.stack(dh0[::-1])
        if not batched:
            return grad[:, 0], dh0[:, 0]
        return (grad.transpose(1, 0, 2, 3, 4) if self.batch_first else grad), dh0


class ConvGRUCell(_ConvGRUParams):
    """One ConvGRU step (eqs. CG1-CG5): ``h' = cell(x, h=None)``; ``dx, dh = cell.backward(dh')``.

    x (N, C_in, H, W); h, h' (N, C, Ho, Wo) with (Ho, Wo) the input
    convolution's output size; weight_ih (3C, C_in, kh_i, kw_i), weight_hh
    (3C, C, kh, kw), bias_ih, bias_hh (3C,), gates stacked r, z, n.
    """

    _first_weight = "weight_ih"

    def __init__(self, input_channels, hidden_channels, kernel_size, bias=True, reset_after=False,
                 input_kernel_size=None, input_stride=1, input_padding=None, *, rng=None, dtype=None):
        super().__init__()
        self._setup(input_channels, hidden_channels, kernel_size, bias, reset_after, input_kernel_size,
                    input_stride, input_padding)
        bound = 1.0 / math.sqrt(self.hidden_channels * self.kernel_size[0] * self.kernel_size[1])
        self._make(backend.make_rng(rng), "", self.input_channels, self.input_kernel_size, dtype, bound)

    def forward(self, x, h=None):
        check_image_input(self, x, self.input_channels, self.weight_ih.dtype)
        if backend.backend_of(x) != backend.backend_of(self.weight_ih.data):
            raise backend.BackendMismatchError(f"ConvGRUCell parameters live on {backend.backend_of(self.weight_ih.data)}"
                                               f" but x is a {backend.backend_of(x)} array; move one of them")
        Ho, Wo = self.state_size(x.shape[-2:])
        h = self._check_state("h", h, (x.shape[0], self.hidden_channels, Ho, Wo), x)
        h_next, cache = F.convgru_step_forward(x, h, *self._arrays(), stride=self.input_stride,
                                               padding=self.input_padding, reset_after=self.reset_after)
        self._save_cache(cache)
        return h_next

    def backward(self, dh_next):
        cache = self._pop_cache()
        check_grad_shape("ConvGRUCell.backward", "dh_next", dh_next, cache.h_prev.shape)
        dx, dh, *grads = F.convgru_step_backward(dh_next, cache)
        self._accumulate(grads)
        return dx, dh
