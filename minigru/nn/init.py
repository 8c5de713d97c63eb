"""Parameter initialisation that matches PyTorch's defaults, driven by a seeded Generator.

PyTorch initialises ``Linear`` and ``Conv2d`` weights with
``kaiming_uniform_(w, a=sqrt(5))``, which works out to
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and their biases with the same bound;
recurrent layers (RNN, GRU, LSTM) draw every weight and bias from
``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))``. Values are drawn on the
host from a ``numpy.random.Generator`` so a seed gives the same model on
NumPy and CuPy (the numbers differ from torch's, whose generator differs).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .module import Parameter

__all__ = ["uniform", "zeros", "ones", "dirac_", "fan_in_bound", "resolve_dtype"]


def resolve_dtype(dtype) -> np.dtype:
    """``None`` means float32 (training precision); anything else must be a floating dtype."""
    dt = np.dtype(np.float32 if dtype is None else dtype)
    if dt.kind != "f":
        raise TypeError(f"parameters must be floating point, got dtype {dt}")
    return dt


def fan_in_bound(fan_in: int) -> float:
    """``1/sqrt(fan_in)``: torch's default bound for Linear/Conv weights and biases."""
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def uniform(rng, shape, bound: float, dtype=None) -> Parameter:
    """A Parameter drawn from ``U(-bound, bound)`` on the current backend."""
    data = backend.random_uniform(backend.make_rng(rng), shape, -bound, bound, dtype=resolve_dtype(dtype))
    return Parameter(data)


def zeros(shape, dtype=None) -> Parameter:
    """A Parameter of zeros on the current backend."""
    return Parameter(backend.get_xp().zeros(shape, dtype=resolve_dtype(dtype)))


def ones(shape, dtype=None) -> Parameter:
    """A Parameter of ones on the current backend."""
    return Parameter(backend.get_xp().ones(shape, dtype=resolve_dtype(dtype)))


def dirac_(weight):
    """Fill a convolution kernel ``weight`` (out_channels, in_channels, kh, kw) in place with the identity.

    Filter ``i < min(out, in)`` has a single 1 at ``[i, i, kh // 2, kw // 2]``; everything else is 0. With
    odd kernels and "same" padding the convolution then copies input channel ``i`` to output channel ``i``
    (torch's ``nn.init.dirac_`` with ``groups=1``). ``weight`` is an array or a Parameter; returns it.
    """
    data = weight.data if isinstance(weight, Parameter) else weight
    if data.ndim != 4:
        raise ValueError(f"dirac_ needs a 4-d convolution kernel (out, in, kh, kw), got shape {tuple(data.shape)}")
    out_channels, in_channels, kh, kw = data.shape
    data.fill(0)
    channels = backend.get_array_module(data).arange(min(out_channels, in_channels))
    data[channels, channels, kh // 2, kw // 2] = 1
    return weight
