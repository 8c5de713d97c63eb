"""Gradient clipping, as ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``.

Clipping by norm rescales *all* gradients together (docs/user_guide.md eq. O9)::

    total = ‖ (‖∇w₁‖_p, ‖∇w₂‖_p, ...) ‖_p          (the p-norm of all gradients as one vector)
    ∇wᵢ  ← ∇wᵢ · min(1, max_norm / (total + 1e-6))

so the direction of the step is kept and only its length is capped. This
stops one bad batch (or an exploding recurrent gradient) from throwing the
weights far away. Everything stays on the parameters' backend: the total
norm comes back as a 0-d array, and no value is copied to the host unless
``error_if_nonfinite`` asks for a check.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..nn.module import Module, Parameter

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm"]


def _grads(parameters) -> list:
    if isinstance(parameters, Module):
        raise TypeError("pass model.parameters(), not the model itself")
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    grads = []
    for i, p in enumerate(parameters):
        if not isinstance(p, Parameter):
            raise TypeError(f"expected Parameters (with .grad); item {i} is a {type(p).__name__}")
        grads.append(p.grad)
    return grads


def _vector_norm(xp, a, norm_type: float):
    """p-norm of all elements of ``a`` (0-d array): max|a| for inf, count of non-zeros for 0."""
    return xp.linalg.norm(a.reshape(-1), ord=norm_type)


def _total_norm(grads: list, norm_type: float):
    if not grads:
        return np.asarray(0.0)
    xp = backend.get_array_module(*grads)
    # The norm of the per-array norms equals the norm of all elements together, without concatenating.
    norms = xp.stack([_vector_norm(xp, g, norm_type) for g in grads])
    return _vector_norm(xp, norms, norm_type)


def get_total_norm(parameters, norm_type: float = 2.0):
    """The ``norm_type``-norm of the gradients of ``parameters`` viewed as one vector (a 0-d array)."""
    return _total_norm(_grads(parameters), float(norm_type))


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False):
    """Scale the gradients of ``parameters`` in place so that their joint norm is at most ``max_norm``.

    Parameters
    ----------
    parameters : a Parameter or an iterable of them (``model.parameters()``).
    max_norm : the largest allowed total norm.
    norm_type : p of the p-norm (``float("inf")`` for the largest absolute value).
    error_if_nonfinite : raise RuntimeError if the total norm is NaN or infinite
        (this reads one number back from the GPU).

    Returns the total norm *before* clipping, a 0-d array on the gradients'
    backend (``float(result)`` gives a number), as torch returns a tensor.
    """
    grads = _grads(parameters)
    total = _total_norm(grads, float(norm_type))
    if not grads:
        return total
    if error_if_nonfinite and not math.isfinite(float(total)):
        raise RuntimeError(f"the total norm of order {float(norm_type)} of the gradients is {float(total)}, so they "
                           "cannot be clipped; set error_if_nonfinite=False to scale them anyway (they become NaN)")
    xp = backend.get_array_module(*grads)
    # The factor stays a 0-d array on the device: deciding "clip or not" on the host would stall a GPU.
    coef = xp.minimum(max_norm / (total + 1e-6), 1.0)
    with np.errstate(invalid="ignore"):  # inf · 0 → NaN is the documented outcome for non-finite gradients
        for g in grads:
            g *= coef.astype(g.dtype, copy=False)
    return total


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient element of ``parameters`` into ``[-clip_value, clip_value]``, in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        xp = backend.get_array_module(g)
        xp.clip(g, -clip_value, clip_value, out=g)
