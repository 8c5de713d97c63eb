"""Dropout layer (inverted dropout, docs/derivations.md §D)."""
from __future__ import annotations

from .. import backend
from .. import functional as F
from .._checks import check_float_input, check_grad_shape
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Zero each element with probability ``p`` in training and scale the rest by 1/(1-p) (eq. D1).

    In evaluation mode (``model.eval()``) it is the identity. ``p=0`` never
    drops and ``p=1`` drops everything (output and gradient zero), as in torch.
    The masks come from the Generator ``self.rng`` (from ``rng``: a Generator,
    an int seed, or None for fresh entropy), so a seed makes them repeatable
    and :func:`minigru.gradcheck.check_module` can replay them.
    """

    def __init__(self, p: float = 0.5, *, rng=None):
        super().__init__()
        self.p = F.check_dropout_probability(p)
        self.rng = backend.make_rng(rng)

    def forward(self, x):
        check_float_input(self, x)
        out, cache = F.dropout_forward(x, self.p, self.rng, self.training)
        self._save_cache((cache, tuple(x.shape)))  # the shape: a None cache (identity) knows none
        return out

    def backward(self, dout):
        cache, shape = self._pop_cache()
        check_grad_shape("Dropout.backward", "dout", dout, shape)
        return F.dropout_backward(dout, cache)

    def extra_repr(self):
        return f"p={self.p}, inplace=False"
