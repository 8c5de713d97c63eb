"""Argument checks shared by the kernels, the layers and the models: one home for each.

This module sits beside :mod:`minigru.backend` at the bottom of the layering
(backend → functional → nn → models), so that every layer above may use it:
it imports nothing from minigru but the backend.

* :func:`pair` — an int or an (h, w) pair of ints (kernel sizes, strides, paddings);
* :func:`positive_int` — a size argument that must be a positive integer;
* :func:`check_float_input`, :func:`check_image_input` — a layer's input array;
* :func:`check_grad_shape` — every backward pass checks each upstream gradient
  it is given (``dout``, ``dh_n``, ...) against the shape its forward produced.

Every check raises one line that names the owner, what was expected and what was given.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import backend

__all__ = ["pair", "positive_int", "check_float_input", "check_image_input", "check_grad_shape"]


def pair(value, name):
    """``(h, w)`` ints from an int or a pair of ints (a TypeError or ValueError naming ``name`` otherwise)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
        both = tuple(value)
    else:
        both = (value, value)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in both):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(both[0]), int(both[1])


def positive_int(owner: str, name: str, value) -> int:
    """``value`` as an int, or a ValueError naming the argument if it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def check_float_input(layer, x, dtype=None, what: str = "input"):
    """Clear errors for a layer input that is not a floating array (of the layer's ``dtype``)."""
    if not backend.is_array(x):
        backend.backend_of(x)  # TypeError naming the type (with a hint for torch tensors)
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(f"{type(layer).__name__} expected a floating-point {what}, got dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{type(layer).__name__} has {np.dtype(dtype)} parameters but got a {x.dtype} {what}; "
                        f"cast the data with x.astype(np.{np.dtype(dtype)}) or the model with "
                        f"model.to(np.{x.dtype})")


def check_image_input(layer, x, channels=None, dtype=None):
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


def check_grad_shape(owner: str, name: str, grad, expected, optional: bool = False):
    """An upstream gradient given to a backward pass must be an array of the shape forward produced.

    owner: who checks (``"GRU.backward"``, ``"gru_backward"``); name: the argument (``"dout"``,
    ``"dh_n"``); expected: the shape (a tuple) of the forward output it is the gradient of;
    optional: None is accepted (a zero gradient). Returns ``grad``. A gradient of the wrong shape
    would otherwise broadcast or reshape into silently wrong numbers.
    """
    if grad is None:
        if optional:
            return None
        raise TypeError(f"{owner}: {name} is required (an array of shape {tuple(expected)}), got None")
    if backend.is_array(grad):
        shape = tuple(grad.shape)
    elif isinstance(grad, numbers.Number):
        shape = ()                     # a plain number is a 0-d gradient (a scalar loss's)
    else:
        raise TypeError(f"{owner}: {name} must be an array of shape {tuple(expected)}, got a "
                        f"{type(grad).__name__}")
    if shape != tuple(expected):
        raise ValueError(f"{owner}: {name} must have shape {tuple(expected)} (the shape its forward produced), "
                         f"got {shape}")
    return grad
