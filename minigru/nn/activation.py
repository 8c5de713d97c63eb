"""Elementwise activation layers and Softmax over the kernels of :mod:`minigru.functional` (eqs. A1-A5, S1)."""
from __future__ import annotations

from .. import functional as F
from .._checks import check_float_input
from .module import Module

__all__ = ["ReLU", "Tanh", "Sigmoid", "GELU", "Softmax"]


class _Elementwise(Module):
    """A parameter-free layer ``out = f(x)`` whose kernel pair caches what backward needs."""

    def forward(self, x):
        check_float_input(self, x)
        out, cache = self._forward(x)
        self._save_cache(cache)
        return out

    def backward(self, dout):
        return self._backward(dout, self._pop_cache())


class ReLU(_Elementwise):
    """out = max(x, 0) (eq. A1); any shape."""

    _forward = staticmethod(F.relu_forward)
    _backward = staticmethod(F.relu_backward)


class Tanh(_Elementwise):
    """out = tanh(x) (eq. A2); any shape."""

    _forward = staticmethod(F.tanh_forward)
    _backward = staticmethod(F.tanh_backward)


class Sigmoid(_Elementwise):
    """out = 1 / (1 + e^{-x}) (eq. A3), computed without overflow for any x; any shape."""

    _forward = staticmethod(F.sigmoid_forward)
    _backward = staticmethod(F.sigmoid_backward)


class GELU(_Elementwise):
    """out = x · Φ(x) (eq. A4), Φ the standard normal distribution function; any shape.

    ``approximate="none"`` (PyTorch's default) is exact, with erf computed element by element (NumPy has
    none): slow, for gradient checks and small models. ``approximate="tanh"`` is PyTorch's tanh form
    (eq. A5): a few ufunc passes, the form to train with. airbench's networks use GELU where the
    models here use ReLU.
    """

    _backward = staticmethod(F.gelu_backward)

    def __init__(self, approximate: str = "none"):
        super().__init__()
        F.check_gelu_approximate(approximate)
        self.approximate = approximate

    def _forward(self, x):
        return F.gelu_forward(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    """softmax along ``dim`` (eq. S1): entries in [0, 1] that sum to 1 along ``dim``; any shape.

    For classification train on logits with :class:`CrossEntropyLoss` (which
    contains the softmax); this layer is for outputs that must be probabilities.
    """

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = int(dim)

    def forward(self, x):
        check_float_input(self, x)
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"Softmax(dim={self.dim}) needs an input with more dimensions, got shape {tuple(x.shape)}")
        out, cache = F.softmax_forward(x, axis=self.dim)
        self._save_cache(cache)
        return out

    def backward(self, dout):
        return F.softmax_backward(dout, self._pop_cache())

    def extra_repr(self):
        return f"dim={self.dim}"
