"""The recurrent classifier head shared by CNNGRU and RowGRU: GRU -> readout -> (Dropout) -> Linear.

A GRU turns a sequence (T, N, F) into hidden states; the classifier needs one
vector per image. Two readouts are offered (docs/models.md explains the choice):

* ``"final"`` (default): the final hidden state of the last GRU layer. For a
  bidirectional GRU that is the concatenation ``[h_fwd(T-1), h_bwd(0)]`` of
  both directions' *final* states, each of which has read the whole sequence.
  (The last *output* step ``out[T-1]`` would pair the forward state, which
  has read everything, with a backward state that has read one step only.)
* ``"mean"``: the mean of the last layer's outputs over the T steps.
"""
from __future__ import annotations

from .. import backend
from ..nn import GRU, Dropout, Linear, Module

__all__ = ["RecurrentClassifier", "READOUTS"]

READOUTS = ("final", "mean")


class RecurrentClassifier(Module):
    """Base class of models that end in ``GRU -> readout -> (Dropout) -> Linear``.

    Subclasses call :meth:`_build_head` in ``__init__`` and use
    :meth:`_head_forward` (seq (T, N, F) -> logits (N, num_classes)) and
    :meth:`_head_backward` (dlogits -> dseq (T, N, F)) around their own front end.
    Children it creates: ``gru``, ``dropout`` (only with dropout > 0), ``fc``.
    """

    def _build_head(self, input_size, hidden_size, num_layers, bidirectional, dropout, reset_after, readout,
                    num_classes, rng, dtype):
        name = type(self).__name__
        if readout not in READOUTS:
            raise ValueError(f"{name}: readout must be one of {READOUTS}, got {readout!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
        self.readout = readout
        self.gru = GRU(input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                       reset_after=reset_after, rng=rng, dtype=dtype)
        if dropout > 0:
            self.dropout = Dropout(dropout, rng=rng)
        directions = 2 if bidirectional else 1
        self.fc = Linear(directions * hidden_size, num_classes, rng=rng, dtype=dtype)

    def _head_forward(self, seq):
        """seq (T, N, F) -> logits (N, num_classes), through GRU, readout, dropout and fc."""
        out, h_n = self.gru(seq)                    # out (T, N, D*H); h_n (layers*D, N, H)
        if self.readout == "final":
            if self.gru.bidirectional:              # [forward final state, backward final state]
                xp = backend.get_array_module(h_n)
                summary = xp.concatenate([h_n[-2], h_n[-1]], axis=1)     # (N, 2H)
            else:
                summary = h_n[-1]                   # (N, H), equal to out[-1]
        else:
            summary = out.mean(axis=0)              # (N, D*H)
        self._save_cache((tuple(out.shape), tuple(h_n.shape)))
        if "dropout" in self._modules:
            summary = self.dropout(summary)
        return self.fc(summary)

    def _head_backward(self, dlogits):
        """dlogits (N, num_classes) -> dseq (T, N, F); adds the head's parameter gradients."""
        out_shape, h_n_shape = self._pop_cache()
        dsummary = self.fc.backward(dlogits)
        if "dropout" in self._modules:
            dsummary = self.dropout.backward(dsummary)
        xp = backend.get_array_module(dsummary)
        if self.readout == "final":
            # only the last layer's final states were read: every other entry of dh_n is zero
            dh_n = xp.zeros(h_n_shape, dtype=dsummary.dtype)
            hidden = self.gru.hidden_size
            if self.gru.bidirectional:
                dh_n[-2] = dsummary[:, :hidden]
                dh_n[-1] = dsummary[:, hidden:]
            else:
                dh_n[-1] = dsummary
            dseq, _ = self.gru.backward(None, dh_n)
        else:
            steps = out_shape[0]
            dout = xp.broadcast_to(dsummary / dsummary.dtype.type(steps), out_shape)
            dseq, _ = self.gru.backward(xp.ascontiguousarray(dout), None)
        return dseq
