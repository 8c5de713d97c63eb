"""GRU layers with PyTorch's names, layouts and initialisation: ``GRU`` and ``GRUCell``.

A GRU has two gates, reset ``r`` and update ``z``, and a candidate ``n``
(docs/derivations.md §G). ``reset_after=True`` (the default) is PyTorch's and
cuDNN's convention, ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`` (eq. G5);
``reset_after=False`` is Cho et al. 2014's, ``n = tanh(W_in x + b_in +
W_hn (r ⊙ h) + b_hn)`` (eq. G6), with the same parameters. A torch GRU's
state dict (converted to arrays) loads into a ``reset_after=True`` GRU
directly, and vice versa.
"""
from __future__ import annotations

from .. import functional as F
from ._recurrent import RNNBase, RNNCellBase

__all__ = ["GRU", "GRUCell"]


class GRU(RNNBase):
    """Multi-layer, optionally bidirectional GRU, as torch.nn.GRU (eqs. G3-G7 at every step).

    ``reset_after=True`` (default) is PyTorch's / cuDNN's candidate
    ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`` (eq. G5); ``reset_after=False``
    is Cho et al. 2014's ``n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)`` (eq. G6),
    which torch does not offer (its state dicts still load: same parameters).

    ``out, h_n = gru(x, h0=None)``; ``dx, dh0 = gru.backward(dout, dh_n=None)``
    (either upstream gradient may be None, meaning zero).

    Shapes, with D = 2 if bidirectional else 1: x (T, N, input_size), or
    (N, T, input_size) with ``batch_first``, or unbatched (T, input_size);
    out (T, N, D*hidden_size) in the same layout; h0, h_n (num_layers*D, N,
    hidden_size), or (num_layers*D, hidden_size) unbatched. Parameters
    ``weight_ih_l{k}[_reverse]`` (3H, I_k), ``weight_hh_l{k}[_reverse]`` (3H, H),
    ``bias_ih_l{k}[_reverse]``, ``bias_hh_l{k}[_reverse]`` (3H,), gates stacked
    r, z, n; all drawn from U(-1/sqrt(H), 1/sqrt(H)) with ``rng``.
    ``dropout`` acts on the outputs of every layer but the last, in training
    mode, with masks drawn from the Generator ``self.rng``.

    ``kernel="fused"`` runs the fast sequence kernels, whose ``out``
    shares memory with the backward cache (do not modify it in place before
    ``backward``); ``kernel="reference"`` runs the plain loop over
    :func:`~minigru.functional.gru_step_forward` / ``gru_step_backward``
    (:mod:`minigru.functional.reference`), slower, with the same results.
    Without ``kernel``, ``DEFAULT_KERNELS["gru"]`` of :mod:`minigru.nn._recurrent`:
    "fused", or "reference" in a classroom copy where the gru exercise is assigned.
    """

    num_gates = 3
    step_module = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, reset_after=True, *, kernel=None, rng=None, dtype=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         kernel=kernel, rng=rng, dtype=dtype)
        self.reset_after = bool(reset_after)

    def _run(self, x, states, params):
        forward = F.gru_reference_forward if self.kernel == "reference" else F.gru_forward
        hs, cache = forward(x, states[0], *params, reset_after=self.reset_after)
        return hs, (hs[-1],), cache

    def _run_backward(self, dhs, dstates, cache):
        backward = F.gru_reference_backward if isinstance(cache, F.ReferenceCache) else F.gru_backward
        dx, dh0, *dparams = backward(dhs, dstates[0], cache)
        return dx, (dh0,), dparams

    def forward(self, x, h0=None):
        out, finals, batched = self._forward_layers(x, h0)
        return out, self._stack_states(finals, 0, batched)

    def backward(self, dout=None, dh_n=None):
        """Gradients (dx, dh0) from dout (out's shape) and dh_n (h_n's shape), either None for zero;
        the parameter gradients are added into ``.grad``."""
        dx, (dh0,) = self._backward_layers(dout, (dh_n,))
        return dx, dh0

    def extra_repr(self):
        return super().extra_repr() + ("" if self.reset_after else ", reset_after=False")


class GRUCell(RNNCellBase):
    """One GRU step (eqs. G3-G7), as torch.nn.GRUCell: ``h' = cell(x, h=None)``; ``dx, dh = cell.backward(dh')``.

    x (N, I) or unbatched (I,); h, h' (N, H) or (H,); weight_ih (3H, I),
    weight_hh (3H, H), bias_ih, bias_hh (3H,), gates stacked r, z, n.
    ``reset_after`` chooses eq. G5 (True, PyTorch) or eq. G6 (False, Cho et al.).
    """

    num_gates = 3

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True, *, rng=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, rng=rng, dtype=dtype)
        self.reset_after = bool(reset_after)

    def forward(self, x, h=None):
        x, (h,), batched = self._check(x, [("h", h)])
        h_next, cache = F.gru_step_forward(x, h, *self._arrays(), reset_after=self.reset_after)
        self._save_cache((cache, batched))
        return h_next if batched else h_next[0]

    def backward(self, dh_next):
        cache, batched = self._pop_cache()
        dh_next = self._check_grad("dh_next", dh_next, batched, cache.h_prev)
        dx, dh, *grads = F.gru_step_backward(dh_next, cache)
        self._accumulate(grads)
        return (dx, dh) if batched else (dx[0], dh[0])

    def extra_repr(self):
        return super().extra_repr() + ("" if self.reset_after else ", reset_after=False")
