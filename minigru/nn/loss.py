"""CrossEntropyLoss: softmax cross-entropy on logits, as torch's (docs/derivations.md §S)."""
from __future__ import annotations

from .. import backend
from .. import functional as F
from .module import Module

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(Module):
    """Cross-entropy between ``softmax(logits)`` and integer class targets (eqs. S1-S8).

    ``loss = criterion(logits, targets)`` with logits (N, C) and targets (N,)
    integer class indices returns a 0-d array (``reduction="mean"`` or
    ``"sum"``) or (N,) (``"none"``); ``dlogits = criterion.backward()``
    (``dout=1.0`` by default; (N,) for ``"none"``) returns dL/dlogits (N, C).

    ``weight`` (C,) weighs each class, and the weighted mean divides by the
    summed weights of the targets, exactly as torch; it is a buffer, so it
    appears in ``state_dict()`` as in torch. ``label_smoothing`` ε mixes the
    one-hot target with the uniform distribution: (1 - ε)·onehot + ε/C.
    ``ignore_index`` and probability targets are not supported.
    """

    def __init__(self, weight=None, *, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__()
        if reduction not in F.REDUCTIONS:
            raise ValueError(f"CrossEntropyLoss: reduction must be one of {F.REDUCTIONS}, got {reduction!r}")
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
        if weight is not None:
            weight = backend.to_backend(weight)
            if weight.ndim != 1 or weight.dtype.kind != "f":
                raise ValueError(f"CrossEntropyLoss: weight must be a 1-D floating array (one weight per class), "
                                 f"got shape {tuple(weight.shape)} and dtype {weight.dtype}")
        self.register_buffer("weight", weight)
        self.reduction = reduction
        self.label_smoothing = float(label_smoothing)

    def forward(self, input, target):
        for name, a in (("input (logits)", input), ("target", target)):
            if not backend.is_array(a):
                raise TypeError(f"CrossEntropyLoss: {name} must be a NumPy or CuPy array, "
                                f"got {type(a).__module__}.{type(a).__qualname__}")
        loss, cache = F.cross_entropy_forward(input, target, self.weight, self.reduction, self.label_smoothing)
        self._save_cache(cache)
        return loss

    def backward(self, dout=1.0):
        return F.cross_entropy_backward(dout, self._pop_cache())

    def extra_repr(self):
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"
