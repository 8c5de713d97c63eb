"""LSTM layers with PyTorch's names, layouts and initialisation: ``LSTM`` and ``LSTMCell``.

Gates i, f, g, o stacked in that order in ``weight_ih`` (4H, I) and
``weight_hh`` (4H, H); states h and c (docs/derivations.md §M). PyTorch's
``proj_size`` is not supported.
"""
from __future__ import annotations

from .. import functional as F
from ._recurrent import RNNBase, RNNCellBase

__all__ = ["LSTM", "LSTMCell"]


class LSTM(RNNBase):
    """Multi-layer, optionally bidirectional LSTM, as torch.nn.LSTM (eqs. M1-M4 at every step).

    ``out, (h_n, c_n) = lstm(x, hx=None)`` with ``hx = (h0, c0)`` (either may
    be None, meaning zeros); ``dx, (dh0, dc0) = lstm.backward(dout, dh_n=None,
    dc_n=None)``. The upstream gradients come in the order the outputs are
    flattened (out, h_n, c_n), so ``backward(*douts)`` works, and dx comes first.

    Shapes, with D = 2 if bidirectional else 1: x (T, N, input_size) (or
    (N, T, input_size) with ``batch_first``, or unbatched (T, input_size));
    out (T, N, D*hidden_size); h0, c0, h_n, c_n (num_layers*D, N, hidden_size).
    Parameters as GRU's, with 4H rows (gates i, f, g, o). ``kernel="reference"``
    runs the loop over the step kernels instead of the fused ones; without ``kernel``,
    ``DEFAULT_KERNELS["lstm"]`` (see :class:`GRU`).
    """

    num_gates = 4
    state_names = ("h0", "c0")
    step_module = "lstm"

    def _run(self, x, states, params):
        forward = F.lstm_reference_forward if self.kernel == "reference" else F.lstm_forward
        (hs, c_n), cache = forward(x, states[0], states[1], *params)
        return hs, (hs[-1], c_n), cache

    def _run_backward(self, dhs, dstates, cache):
        backward = F.lstm_reference_backward if isinstance(cache, F.ReferenceCache) else F.lstm_backward
        dx, dh0, dc0, *dparams = backward(dhs, dstates[0], dstates[1], cache)
        return dx, (dh0, dc0), dparams

    def forward(self, x, hx=None):
        out, finals, batched = self._forward_layers(x, hx)
        return out, (self._stack_states(finals, 0, batched), self._stack_states(finals, 1, batched))

    def backward(self, dout=None, dh_n=None, dc_n=None):
        """Gradients ``(dx, (dh0, dc0))``; the parameter gradients are added into ``.grad``."""
        dx, (dh0, dc0) = self._backward_layers(dout, (dh_n, dc_n))
        return dx, (dh0, dc0)


class LSTMCell(RNNCellBase):
    """One LSTM step (eqs. M1-M4), as torch.nn.LSTMCell.

    ``h', c' = cell(x, hx=None)`` with ``hx = (h, c)``; ``dx, (dh, dc) = cell.backward(dh', dc'=None)``.
    x (N, I) or unbatched (I,); h, c, h', c' (N, H) or (H,); weight_ih (4H, I),
    weight_hh (4H, H), bias_ih, bias_hh (4H,), gates stacked i, f, g, o.
    """

    num_gates = 4

    def forward(self, x, hx=None):
        h, c = (None, None) if hx is None else hx
        x, (h, c), batched = self._check(x, [("h", h), ("c", c)])
        (h_next, c_next), cache = F.lstm_step_forward(x, h, c, *self._arrays())
        self._save_cache((cache, batched))
        return (h_next, c_next) if batched else (h_next[0], c_next[0])

    def backward(self, dh_next, dc_next=None):
        cache, batched = self._pop_cache()
        dh_next = self._check_grad("dh_next", dh_next, batched, cache.h_prev)
        if dc_next is not None:
            dc_next = self._check_grad("dc_next", dc_next, batched, cache.c_prev)
        dx, dh, dc, *grads = F.lstm_step_backward(dh_next, dc_next, cache)
        self._accumulate(grads)
        return (dx, (dh, dc)) if batched else (dx[0], (dh[0], dc[0]))
