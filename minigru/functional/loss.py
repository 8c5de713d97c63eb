"""Softmax, log-softmax and the softmax cross-entropy loss (docs/derivations.md §S).

The cross-entropy follows ``torch.nn.functional.cross_entropy`` exactly,
including ``label_smoothing`` and class ``weight``: with ε the smoothing,
w the class weights (all ones by default) and log p = log_softmax(z), sample
i with target y_i costs (eq. S4)::

    ℓ_i = (1 - ε) w_{y_i} (-log p_{i,y_i})  +  (ε / C) Σ_c w_c (-log p_{i,c})

``reduction="none"`` returns ℓ (N,), ``"sum"`` returns Σ ℓ_i and ``"mean"``
returns Σ ℓ_i / Σ w_{y_i} (eq. S5): the weighted mean divides by the summed
weights of the targets, as torch does (N without weights).

Shapes: ``logits`` (N, C), ``targets`` (N,) integer class indices in
[0, C - 1], ``weight`` (C,). Softmax helpers work along any ``axis``.

Nothing here reads device values back to the host (each read would stall a
GPU): host targets out of range raise ValueError, device targets out of range
make their samples' losses (and gradient rows) NaN, and on the device a
weighted mean whose target weights sum to zero is NaN or inf rather than an error.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_grad_shape
from ..backend import get_array_module, values_on_host

__all__ = ["log_softmax", "softmax", "softmax_forward", "softmax_backward", "SoftmaxCache", "CrossEntropyCache",
           "cross_entropy_forward", "cross_entropy_backward", "REDUCTIONS"]


class SoftmaxCache(NamedTuple):
    """What :func:`softmax_backward` needs: the probabilities ``out`` (shape of x) and the ``axis``."""
    out: object
    axis: int


class CrossEntropyCache(NamedTuple):
    """What :func:`cross_entropy_backward` needs: probs (N, C), targets (N,), the weight of each row's
    target target_weight (N,), the class weights (C,) or None, the label smoothing eps, the reduction and
    its denominator (eq. S8), and for device targets the mask ``valid`` (N,) of those in range (None on the
    host, where targets out of range raise instead)."""
    probs: object
    targets: object
    target_weight: object
    weight: object
    eps: float
    reduction: str
    denominator: object
    valid: object = None

REDUCTIONS = ("mean", "sum", "none")


def log_softmax(x, axis=-1):
    """log softmax(x) along ``axis`` (eq. S2), stable for any magnitude of x.

    Subtracting the row maximum first (eq. S1) makes every exponent <= 0, so
    ``exp`` cannot overflow and the largest term of the sum is exactly 1.
    Shape: that of x.
    """
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(x, axis=-1):
    """softmax(x) along ``axis`` (eq. S1): entries in [0, 1] summing to 1. Shape: that of x."""
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def softmax_forward(x, axis=-1):
    """out = softmax(x) along ``axis`` (eq. S1). Returns ``(out, cache)``, a :class:`SoftmaxCache`."""
    out = softmax(x, axis)
    return out, SoftmaxCache(out, axis)


def softmax_backward(dout, cache):
    """dx = p ⊙ (dout - Σ_axis dout ⊙ p) (eq. S6). dout and dx have the shape of x."""
    check_grad_shape("softmax_backward", "dout", dout, cache.out.shape)
    p, axis = cache.out, cache.axis
    return p * (dout - (dout * p).sum(axis=axis, keepdims=True))


def _check_cross_entropy_args(logits, targets, weight, reduction, label_smoothing):
    xp = get_array_module(logits, targets, weight)
    if reduction not in REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must have shape (N, C), got {tuple(logits.shape)}")
    if np.dtype(logits.dtype).kind != "f":
        raise TypeError(f"cross_entropy: logits must be floating point, got dtype {logits.dtype}")
    N, C = logits.shape
    if N == 0 or C == 0:
        raise ValueError(f"cross_entropy: logits are empty, shape {tuple(logits.shape)}")
    if np.dtype(targets.dtype).kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class indices (e.g. int64), got dtype "
                        f"{targets.dtype}" + ("; class probabilities are not supported"
                                              if np.dtype(targets.dtype).kind == "f" else ""))
    if tuple(targets.shape) != (N,):
        raise ValueError(f"cross_entropy: targets must have shape ({N},) to match logits {tuple(logits.shape)}, "
                         f"got {tuple(targets.shape)}")
    # The range check reads values: free for host targets; for device targets it would stall the GPU on
    # every call, so cross_entropy_forward marks out-of-range targets' losses NaN there instead.
    if values_on_host(targets):
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= C:
            raise ValueError(f"cross_entropy: targets must be class indices in [0, {C - 1}] for {C} classes, "
                             f"got values from {low} to {high}")
    if weight is not None:
        if tuple(weight.shape) != (C,):
            raise ValueError(f"cross_entropy: weight must have shape ({C},), one per class, got {tuple(weight.shape)}")
        if np.dtype(weight.dtype).kind != "f":
            raise TypeError(f"cross_entropy: weight must be floating point, got dtype {weight.dtype}")
    return xp


def cross_entropy_forward(logits, targets, weight=None, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of class scores against integer targets (eqs. S1-S5).

    Inputs:
    - logits: (N, C) unnormalised class scores z
    - targets: (N,) integer class indices y_i in [0, C - 1]
    - weight: (C,) class weights w, or None (all ones)
    - reduction: "mean" | "sum" | "none"
    - label_smoothing: ε in [0, 1]; the target becomes (1 - ε)·onehot + ε/C

    Returns ``(loss, cache)``:
    - loss: 0-d array ("mean", "sum") or (N,) ("none"), dtype of logits
    - cache: what :func:`cross_entropy_backward` needs (probabilities (N, C), ...)
    """
    xp = _check_cross_entropy_args(logits, targets, weight, reduction, label_smoothing)
    N, C = logits.shape
    eps = float(label_smoothing)
    rows = xp.arange(N)
    valid = None
    if not values_on_host(targets):  # range-checked on the device, without a sync (module docstring)
        valid = (targets >= 0) & (targets < C)
        targets = xp.where(valid, targets, 0)
    if weight is not None:
        weight = weight.astype(logits.dtype, copy=False)
    target_weight = xp.ones(N, dtype=logits.dtype) if weight is None else weight[targets]
    ### HINT: log p = z - max(z) - log Σ exp(z - max(z)) row-wise (eqs. S1-S2; the helper log_softmax does it);
    ### HINT: ℓ_i = (1-ε) w_{y_i} (-log p_{i,y_i}) + (ε/C) Σ_c w_c (-log p_{i,c}) (eq. S4), with
    ### HINT: target_weight = w_{y_i} (N,), weight = w (C,) or None (all ones), eps = ε, rows = arange(N).
    ### HINT: Name the results logp (N, C) and per_sample (N,).
    ### BEGIN SOLUTION
    logp = log_softmax(logits, axis=1)
    per_sample = (1.0 - eps) * target_weight * -logp[rows, targets]
    if eps > 0.0:
        smooth = -logp.sum(axis=1) if weight is None else -(logp @ weight)
        per_sample += (eps / C) * smooth
    ### END SOLUTION
    if valid is not None:
        per_sample = xp.where(valid, per_sample, xp.nan).astype(logits.dtype, copy=False)
    if reduction == "none":
        loss, denominator = per_sample, None
    else:
        # N without weights; Σ w_{y_i} with weights, kept on the targets' backend (a 0-d array on a GPU)
        denominator = (N if weight is None else target_weight.sum()) if reduction == "mean" else 1.0
        if weight is not None and reduction == "mean" and values_on_host(denominator) and denominator == 0.0:
            raise ValueError("cross_entropy: the weights of all targets sum to zero, so the weighted mean is undefined")
        loss = xp.asarray(per_sample.sum() / denominator)
    cache = CrossEntropyCache(xp.exp(logp), targets, target_weight, weight, eps, reduction, denominator, valid)
    return loss, cache


def cross_entropy_backward(dout=1.0, cache=None):
    """Gradient of the cross-entropy with respect to the logits (eqs. S7-S8).

    Inputs:
    - dout: upstream gradient of the loss: a number or 0-d array for "mean"
      and "sum" (1.0 when the loss is the objective), (N,) for "none"
    - cache: from :func:`cross_entropy_forward`

    Returns dlogits, (N, C): ``dout_i / D · (Q_i p_i - q_i)`` per row, where q_i is
    the (weighted, smoothed) target distribution, Q_i = Σ_c q_ic and D the
    denominator of the reduction (eq. S8); without weights Q_i = 1 and the
    familiar ``p - onehot`` appears.
    """
    if cache is None:
        raise TypeError("cross_entropy_backward(dout, cache): the cache from cross_entropy_forward is required")
    probs, targets, target_weight, weight = cache.probs, cache.targets, cache.target_weight, cache.weight
    eps, reduction, denominator = cache.eps, cache.reduction, cache.denominator
    valid = cache.valid
    xp = get_array_module(probs)
    N, C = probs.shape
    rows = xp.arange(N)
    if reduction == "none":
        scale = check_grad_shape("cross_entropy_backward", "dout", dout, (N,))[:, None]
    else:
        if np.ndim(dout) != 0:
            raise ValueError(f"cross_entropy_backward: with reduction={reduction!r} the loss is a scalar, so dout "
                             f"must be a number or 0-d array, got shape {tuple(np.shape(dout))}")
        scale = dout / denominator
    smooth_row = eps / C if weight is None else (eps / C) * weight          # (ε/C) w_c: smoothing part of q
    total = (1.0 - eps) * target_weight + (eps if weight is None else (eps / C) * weight.sum())   # Q_i
    ### HINT: ∂ℓ_i/∂z_ic = Q_i p_ic - q_ic (eq. S7) with q_ic = (1-ε) w_{y_i} [c = y_i] + (ε/C) w_c and
    ### HINT: Q_i = Σ_c q_ic; here probs = p (N, C), total = Q (N,), smooth_row = (ε/C) w_c, and the
    ### HINT: reduction contributes the factor scale (eq. S8). Name the result dlogits (N, C).
    ### BEGIN SOLUTION
    dlogits = probs * total[:, None]
    dlogits -= smooth_row
    dlogits[rows, targets] -= (1.0 - eps) * target_weight
    dlogits *= scale
    ### END SOLUTION
    if valid is not None:  # rows of out-of-range device targets (their losses are NaN too)
        dlogits = xp.where(valid[:, None], dlogits, xp.nan)
    return dlogits.astype(probs.dtype, copy=False)
