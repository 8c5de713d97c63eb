"""Write tests/golden/recurrent.npz: PyTorch's numbers for the recurrent layers (GRU, LSTM, RNN and cells).

Run from the repository root with torch installed::

    python tests/golden/make_recurrent.py

Every case stores, in float64, the layer's parameters (``<case>__param__<name>``,
torch's state-dict names), the inputs (x, h0[, c0]), the upstream gradients
(dout, dh_n[, dc_n]), torch's outputs (out, h_n[, c_n]) and torch's gradients
(dx, dh0[, dc0], ``<case>__grad__<name>``). tests/test_gru.py, test_lstm.py
and test_rnn.py load the parameters into minigru layers and compare, so that
the comparison with PyTorch also runs where torch is not installed.
"""
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).with_name("recurrent.npz")

SEQUENCE_CASES = {
    # name: (torch class, constructor kwargs, batch size, steps, input size, hidden size)
    "gru": ("GRU", dict(num_layers=2, bidirectional=True), 2, 4, 3, 4),
    "gru_batch_first": ("GRU", dict(batch_first=True), 3, 5, 2, 3),
    "lstm": ("LSTM", dict(num_layers=2, bidirectional=True), 2, 4, 3, 4),
    "lstm_batch_first": ("LSTM", dict(batch_first=True, bias=False), 3, 3, 2, 3),
    "rnn_tanh": ("RNN", dict(num_layers=2), 2, 4, 3, 4),
    "rnn_relu": ("RNN", dict(nonlinearity="relu", bidirectional=True), 2, 4, 3, 4),
}
CELL_CASES = {"grucell": "GRUCell", "lstmcell": "LSTMCell", "rnncell": "RNNCell"}


def _np(t):
    return t.detach().numpy().copy()


def sequence_case(kind, kwargs, batch, steps, features, hidden, gen):
    layer = getattr(torch.nn, kind)(features, hidden, **kwargs).double()
    count = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    shape = (batch, steps, features) if kwargs.get("batch_first") else (steps, batch, features)
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    states = [torch.randn((count, batch, hidden), generator=gen, dtype=torch.float64, requires_grad=True)
              for _ in range(2 if kind == "LSTM" else 1)]
    out, finals = layer(x, tuple(states) if kind == "LSTM" else states[0])
    finals = list(finals) if kind == "LSTM" else [finals]
    douts = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in [out, *finals]]
    torch.autograd.backward([out, *finals], douts)
    names = ["h", "c"][:len(states)]
    case = {"x": _np(x), "out": _np(out), "dout": _np(douts[0]), "dx": _np(x.grad)}
    for name, s, f, d in zip(names, states, finals, douts[1:]):
        case.update({f"{name}0": _np(s), f"{name}_n": _np(f), f"d{name}_n": _np(d), f"d{name}0": _np(s.grad)})
    for name, p in layer.named_parameters():
        case["param__" + name] = _np(p)
        case["grad__" + name] = _np(p.grad)
    return case


def cell_case(kind, gen, batch=3, features=4, hidden=3):
    cell = getattr(torch.nn, kind)(features, hidden).double()
    x = torch.randn((batch, features), generator=gen, dtype=torch.float64, requires_grad=True)
    h = torch.randn((batch, hidden), generator=gen, dtype=torch.float64, requires_grad=True)
    case = {"x": None, "h": None}
    if kind == "LSTMCell":
        c = torch.randn((batch, hidden), generator=gen, dtype=torch.float64, requires_grad=True)
        h_next, c_next = cell(x, (h, c))
        dh_next = torch.randn(h_next.shape, generator=gen, dtype=torch.float64)
        dc_next = torch.randn(c_next.shape, generator=gen, dtype=torch.float64)
        torch.autograd.backward([h_next, c_next], [dh_next, dc_next])
        case.update({"c": _np(c), "c_next": _np(c_next), "dc_next": _np(dc_next), "dc": _np(c.grad)})
    else:
        h_next = cell(x, h)
        dh_next = torch.randn(h_next.shape, generator=gen, dtype=torch.float64)
        h_next.backward(dh_next)
    case.update({"x": _np(x), "h": _np(h), "h_next": _np(h_next), "dh_next": _np(dh_next),
                 "dx": _np(x.grad), "dh": _np(h.grad)})
    for name, p in cell.named_parameters():
        case["param__" + name] = _np(p)
        case["grad__" + name] = _np(p.grad)
    return case


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    arrays = {}
    for case, args in SEQUENCE_CASES.items():
        for key, value in sequence_case(*args, gen).items():
            arrays[f"{case}__{key}"] = value
    for case, kind in CELL_CASES.items():
        for key, value in cell_case(kind, gen).items():
            arrays[f"{case}__{key}"] = value
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
