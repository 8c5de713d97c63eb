"""Per-element losses: mean squared error and binary cross-entropy on logits (docs/derivations.md §RL).

Both follow torch exactly (``torch.nn.functional.mse_loss`` and
``binary_cross_entropy_with_logits``), element by element over inputs of any
shape, with ``reduction`` "mean" (over all M elements), "sum" or "none"
(same shape as the input). ``input`` and ``target`` must have the same shape
and floating dtype (torch only warns about mismatched shapes, and then
broadcasts, which is almost always a bug).

The backward kernels return the gradients of both ``input`` and ``target``
(a target may itself be a network output); the loss layers return only the
input's.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_grad_shape
from ..backend import get_array_module
from .activations import sigmoid
from .loss import REDUCTIONS

__all__ = ["mse_loss_forward", "mse_loss_backward", "bce_with_logits_forward", "bce_with_logits_backward",
           "MSECache", "BCECache"]


class MSECache(NamedTuple):
    """What :func:`mse_loss_backward` needs: input − target and the reduction."""
    diff: object
    reduction: str


class BCECache(NamedTuple):
    """What :func:`bce_with_logits_backward` needs: the logits and targets, softplus(−x), the weights
    (or None) and the reduction."""
    logits: object
    target: object
    softplus_neg: object
    weight: object
    pos_weight: object
    reduction: str


def _check_pair(kernel, input, target, reduction):
    xp = get_array_module(input, target)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{kernel}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    for name, a in (("input", input), ("target", target)):
        if np.dtype(a.dtype).kind != "f":
            raise TypeError(f"{kernel}: {name} must be floating point, got dtype {a.dtype}")
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"{kernel}: input and target must have the same shape, got {tuple(input.shape)} and "
                         f"{tuple(target.shape)}")
    if input.dtype != target.dtype:
        raise TypeError(f"{kernel}: input is {input.dtype} but target is {target.dtype}; cast one of them")
    if input.size == 0:
        raise ValueError(f"{kernel}: the input is empty, shape {tuple(input.shape)}")
    return xp


def _reduce(xp, per_element, reduction):
    if reduction == "none":
        return per_element
    total = per_element.sum()
    return xp.asarray(total / per_element.size if reduction == "mean" else total)


def _upstream(kernel, dout, reduction, shape, size):
    """The upstream gradient of every element (RL3): dout / M for "mean", dout for "sum", dout itself for "none"."""
    if reduction == "none":
        return check_grad_shape(kernel, "dout", dout, shape)
    if np.ndim(dout) != 0:
        raise ValueError(f"{kernel}: with reduction={reduction!r} the loss is a scalar, so dout must be a number "
                         f"or 0-d array, got shape {tuple(np.shape(dout))}")
    return dout / size if reduction == "mean" else dout


def mse_loss_forward(input, target, reduction="mean"):
    """Squared error ℓ = (x − y)² per element (eq. RL1), reduced (eq. RL2).

    input, target: any shape (the same), floating. Returns ``(loss, cache)``
    with loss 0-d ("mean", "sum") or input's shape ("none").
    """
    xp = _check_pair("mse_loss", input, target, reduction)
    diff = input - target
    return _reduce(xp, diff * diff, reduction), MSECache(diff, reduction)


def mse_loss_backward(dout, cache):
    """Gradients of :func:`mse_loss_forward` (eq. RL4): ``(dinput, dtarget)``, both of input's shape.

    dout: a number or 0-d array for "mean"/"sum" (1.0 when the loss is the objective), input's shape for "none".
    """
    diff, reduction = cache.diff, cache.reduction
    g = _upstream("mse_loss_backward", dout, reduction, diff.shape, diff.size)
    dinput = (2 * g) * diff
    dinput = dinput.astype(diff.dtype, copy=False)
    return dinput, -dinput


def _check_weights(kernel, shape, dtype, **weights):
    checked = {}
    for name, w in weights.items():
        if w is None:
            checked[name] = None
            continue
        if np.dtype(w.dtype).kind != "f":
            raise TypeError(f"{kernel}: {name} must be floating point, got dtype {w.dtype}")
        try:
            broadcast = np.broadcast_shapes(tuple(w.shape), tuple(shape))
        except ValueError:
            broadcast = None
        if broadcast != tuple(shape):
            raise ValueError(f"{kernel}: {name} of shape {tuple(w.shape)} does not broadcast to the input's shape "
                             f"{tuple(shape)}" + (" (pos_weight has one entry per class: the LAST dimension)"
                                                  if name == "pos_weight" else ""))
        checked[name] = w.astype(dtype, copy=False)
    return checked


def bce_with_logits_forward(logits, target, weight=None, pos_weight=None, reduction="mean"):
    """Binary cross-entropy of σ(x) against targets y in [0, 1], computed from the logits x (eq. RL5):

        ℓ = w · [ (1 − y) x + (1 + (p − 1) y) · softplus(−x) ],   softplus(u) = log(1 + e^u)

    which equals −w [p y log σ(x) + (1 − y) log(1 − σ(x))] without ever forming log σ(x) (stable for
    any x). logits, target: any shape (the same), floating; weight w: broadcastable to it or None;
    pos_weight p: broadcastable to it (one per class along the last dimension) or None. Returns
    ``(loss, cache)``, loss reduced as in :func:`mse_loss_forward` (the mean is over all elements,
    as torch, whatever the weights).
    """
    xp = _check_pair("bce_with_logits", logits, target, reduction)
    get_array_module(logits, weight, pos_weight)   # BackendMismatchError when NumPy and CuPy meet
    w = _check_weights("bce_with_logits", logits.shape, logits.dtype, weight=weight, pos_weight=pos_weight)
    # softplus(−x) = max(−x, 0) + log(1 + e^{−|x|}): the exponent is never positive
    softplus_neg = xp.maximum(-logits, 0) + xp.log1p(xp.exp(-xp.abs(logits)))
    log_weight = 1 if w["pos_weight"] is None else 1 + (w["pos_weight"] - 1) * target
    per_element = (1 - target) * logits + log_weight * softplus_neg
    if w["weight"] is not None:
        per_element = per_element * w["weight"]
    cache = BCECache(logits, target, softplus_neg, w["weight"], w["pos_weight"], reduction)
    return _reduce(xp, per_element.astype(logits.dtype, copy=False), reduction), cache


def bce_with_logits_backward(dout, cache):
    """Gradients of :func:`bce_with_logits_forward` (eq. RL6), ``(dlogits, dtarget)``:

        ∂ℓ/∂x = w · [ (1 − y) − (1 + (p − 1) y) · σ(−x) ]        (= w (σ(x) − y) when p = 1)
        ∂ℓ/∂y = w · [ −x + (p − 1) · softplus(−x) ]

    times the upstream gradient (dout / M for "mean"). dout as in :func:`mse_loss_backward`.
    """
    logits, target, softplus_neg = cache.logits, cache.target, cache.softplus_neg
    weight, pos_weight, reduction = cache.weight, cache.pos_weight, cache.reduction
    g = _upstream("bce_with_logits_backward", dout, reduction, logits.shape, logits.size)
    sigma_neg = sigmoid(-logits)                      # σ(−x) = 1 − σ(x), stable (eq. A3)
    if pos_weight is None:
        dlogits = (1 - target) - sigma_neg
        dtarget = -logits
    else:
        dlogits = (1 - target) - (1 + (pos_weight - 1) * target) * sigma_neg
        dtarget = -logits + (pos_weight - 1) * softplus_neg
    scale = g if weight is None else g * weight
    dlogits = (dlogits * scale).astype(logits.dtype, copy=False)
    dtarget = (dtarget * scale).astype(logits.dtype, copy=False)
    return dlogits, dtarget
