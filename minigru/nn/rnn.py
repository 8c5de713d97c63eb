"""Elman recurrent layers with PyTorch's names, layouts and initialisation: ``RNN`` and ``RNNCell``.

Both run on the kernels of :mod:`minigru.functional.rnn` (eqs. R1-R5); the multi-layer,
bidirectional driver they share with GRU and LSTM is :class:`minigru.nn._recurrent.RNNBase`.
"""
from __future__ import annotations

from .. import functional as F
from ._recurrent import RNNBase, RNNCellBase

__all__ = ["RNN", "RNNCell", "RNNBase", "RNNCellBase"]


class RNN(RNNBase):
    """Elman RNN, ``h' = φ(W_ih x + b_ih + W_hh h + b_hh)`` with φ = tanh or relu (eq. R1), as torch.nn.RNN.

    ``out, h_n = rnn(x, h0=None)``; ``dx, dh0 = rnn.backward(dout, dh_n=None)``
    (either upstream gradient may be None, meaning zero). Shapes: x (T, N, I)
    (or (N, T, I) with batch_first, or unbatched (T, I)); out (T, N, D*H);
    h0, h_n (num_layers * D, N, H), D = 2 if bidirectional else 1.
    ``kernel``: "fused", "reference" or, by default, ``DEFAULT_KERNELS["rnn"]`` (see :class:`~minigru.nn.GRU`).
    """

    step_module = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, kernel=None, rng=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         kernel=kernel, rng=rng, dtype=dtype)
        self.nonlinearity = nonlinearity

    def _run(self, x, states, params):
        forward = F.rnn_reference_forward if self.kernel == "reference" else F.rnn_forward
        hs, cache = forward(x, states[0], *params, nonlinearity=self.nonlinearity)
        return hs, (hs[-1],), cache

    def _run_backward(self, dhs, dstates, cache):
        backward = F.rnn_reference_backward if isinstance(cache, F.ReferenceCache) else F.rnn_backward
        dx, dh0, *dparams = backward(dhs, dstates[0], cache)
        return dx, (dh0,), dparams

    def forward(self, x, h0=None):
        out, finals, batched = self._forward_layers(x, h0)
        return out, self._stack_states(finals, 0, batched)

    def backward(self, dout=None, dh_n=None):
        dx, (dh0,) = self._backward_layers(dout, (dh_n,))
        return dx, dh0

    def extra_repr(self):
        s = super().extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class RNNCell(RNNCellBase):
    """One step of an Elman RNN (eq. R1), as torch.nn.RNNCell.

    ``h' = cell(x, h=None)``; ``dx, dh = cell.backward(dh')``.

    x (N, I) or (I,); h, h' (N, H) or (H,); weight_ih (H, I), weight_hh (H, H), biases (H,).
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *, rng=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, rng=rng, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, x, h=None):
        x, (h,), batched = self._check(x, [("h", h)])
        h_next, cache = F.rnn_step_forward(x, h, *self._arrays(), nonlinearity=self.nonlinearity)
        self._save_cache((cache, batched))
        return h_next if batched else h_next[0]

    def backward(self, dh_next):
        cache, batched = self._pop_cache()
        dh_next = self._check_grad("dh_next", dh_next, batched, cache.h_next)
        dx, dh, *grads = F.rnn_step_backward(dh_next, cache)
        self._accumulate(grads)
        return (dx, dh) if batched else (dx[0], dh[0])

    def extra_repr(self):
        return super().extra_repr() + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")
