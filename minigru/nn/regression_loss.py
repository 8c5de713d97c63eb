"""MSELoss and BCEWithLogitsLoss with torch's arguments and semantics (docs/derivations.md §RL)."""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from .module import Module

__all__ = ["MSELoss", "BCEWithLogitsLoss"]


def _check_reduction(owner, reduction):
    if reduction not in F.REDUCTIONS:
        raise ValueError(f"{owner}: reduction must be one of {F.REDUCTIONS}, got {reduction!r}")
    return reduction


def _check_arrays(owner, input, target):
    for name, a in (("input", input), ("target", target)):
        if not backend.is_array(a):
            raise TypeError(f"{owner}: {name} must be a NumPy or CuPy array, "
                            f"got {type(a).__module__}.{type(a).__qualname__}")


class MSELoss(Module):
    """Mean squared error ``(input − target)²`` per element (eqs. RL1-RL4), as torch.nn.MSELoss.

    ``loss = criterion(input, target)`` (same shapes, any) returns a 0-d array
    (``reduction="mean"`` over all elements, or ``"sum"``) or the per-element
    losses (``"none"``); ``dinput = criterion.backward(dout=1.0)``.
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction("MSELoss", reduction)

    def forward(self, input, target):
        _check_arrays("MSELoss", input, target)
        loss, cache = F.mse_loss_forward(input, target, self.reduction)
        self._save_cache(cache)
        return loss

    def backward(self, dout=1.0):
        return F.mse_loss_backward(dout, self._pop_cache())[0]

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class BCEWithLogitsLoss(Module):
    """Binary cross-entropy on logits, ``−w [p y log σ(x) + (1 − y) log(1 − σ(x))]`` per element,
    computed stably from x (eqs. RL5, RL6), as torch.nn.BCEWithLogitsLoss.

    ``weight`` (broadcastable to the input) rescales each element's loss;
    ``pos_weight`` p (broadcastable, usually one per class along the last
    dimension) weighs the positive term. Both are buffers, as in torch, so they
    appear in ``state_dict()``. Targets are probabilities in [0, 1] of the
    input's shape and dtype. ``dlogits = criterion.backward(dout=1.0)``.
    """

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        super().__init__()
        self.reduction = _check_reduction("BCEWithLogitsLoss", reduction)
        for name, w in (("weight", weight), ("pos_weight", pos_weight)):
            if w is not None:
                w = backend.to_backend(w)
                if np.dtype(w.dtype).kind != "f":
                    raise TypeError(f"BCEWithLogitsLoss: {name} must be floating point, got dtype {w.dtype}")
            self.register_buffer(name, w)

    def forward(self, input, target):
        _check_arrays("BCEWithLogitsLoss", input, target)
        loss, cache = F.bce_with_logits_forward(input, target, self.weight, self.pos_weight, self.reduction)
        self._save_cache(cache)
        return loss

    def backward(self, dout=1.0):
        return F.bce_with_logits_backward(dout, self._pop_cache())[0]

    def extra_repr(self):
        return f"reduction={self.reduction!r}"
