"""Every backward checks the upstream gradients it is given against the shapes its forward produced.

A gradient of the wrong shape used to pass silently wherever NumPy could broadcast or reshape it
(``GRUCell.backward`` with a (1, H) gradient for an (N, H) output, ``ReLU`` and friends, ``Flatten``
with a gradient of the right size, ``ConvGRU`` with ``dh_n`` for the wrong number of layers): the
result was a gradient of the wrong numbers. Property: for every layer and every gradient argument,
each wrong shape (an axis of another size, 1 included, an axis too few or too many, the same size
in another shape) raises a one-line ValueError naming the expected shape, and the right shapes work.
Backward takes the gradients in the order of the flattened outputs of forward (``out, h_n`` ...).
"""
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigru import functional as F
from minigru import nn

F64 = np.float64


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _eval(layer):
    return layer.eval()


CASES = {
    "ReLU": (lambda: nn.ReLU(), lambda: (_x(2, 3, 4),)),
    "Tanh": (lambda: nn.Tanh(), lambda: (_x(2, 3, 4),)),
    "Sigmoid": (lambda: nn.Sigmoid(), lambda: (_x(3, 2),)),
    "Softmax": (lambda: nn.Softmax(dim=1), lambda: (_x(2, 3),)),
    "Flatten": (lambda: nn.Flatten(), lambda: (_x(2, 3, 4),)),
    "Linear": (lambda: nn.Linear(4, 3, rng=0, dtype=F64), lambda: (_x(2, 5, 4),)),
    "Dropout": (lambda: nn.Dropout(0.5, rng=0), lambda: (_x(3, 4),)),
    "Dropout.eval": (lambda: _eval(nn.Dropout(0.5, rng=0)), lambda: (_x(3, 4),)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(3, dtype=F64), lambda: (_x(4, 3),)),
    "BatchNorm2d.eval": (lambda: _eval(nn.BatchNorm2d(3, dtype=F64)), lambda: (_x(2, 3, 2, 2),)),
    "Conv2d": (lambda: nn.Conv2d(2, 3, 3, padding=1, rng=0, dtype=F64), lambda: (_x(2, 2, 4, 4),)),
    "PatchWhitening": (lambda: nn.PatchWhitening(2, 2, dtype=F64).fit(_x(2, 2, 4, 4)), lambda: (_x(2, 2, 4, 4),)),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), lambda: (_x(1, 2, 4, 4),)),
    "AvgPool2d": (lambda: nn.AvgPool2d(2), lambda: (_x(1, 2, 4, 4),)),
    "AdaptiveAvgPool2d(1)": (lambda: nn.AdaptiveAvgPool2d(1), lambda: (_x(2, 2, 4, 4),)),
    "AdaptiveAvgPool2d(2)": (lambda: nn.AdaptiveAvgPool2d(2), lambda: (_x(2, 2, 4, 4),)),
    "CrossEntropyLoss": (lambda: nn.CrossEntropyLoss(reduction="none"), lambda: (_x(3, 4), np.array([0, 3, 1]))),
    "MSELoss": (lambda: nn.MSELoss(reduction="none"), lambda: (_x(3, 2), _x(3, 2, seed=1))),
    "BCEWithLogitsLoss": (lambda: nn.BCEWithLogitsLoss(reduction="none"),
                          lambda: (_x(3, 2), (_x(3, 2, seed=1) > 0).astype(F64))),
    "RNNCell": (lambda: nn.RNNCell(3, 4, rng=0, dtype=F64), lambda: (_x(2, 3),)),
    "GRUCell": (lambda: nn.GRUCell(3, 4, rng=0, dtype=F64), lambda: (_x(2, 3),)),
    "GRUCell.unbatched": (lambda: nn.GRUCell(3, 4, rng=0, dtype=F64), lambda: (_x(3),)),
    "LSTMCell": (lambda: nn.LSTMCell(3, 4, rng=0, dtype=F64), lambda: (_x(2, 3),)),
    "RNN": (lambda: nn.RNN(3, 4, num_layers=2, rng=0, dtype=F64), lambda: (_x(5, 2, 3),)),
    "GRU": (lambda: nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True, rng=0, dtype=F64),
            lambda: (_x(2, 5, 3),)),
    "GRU.unbatched": (lambda: nn.GRU(3, 4, rng=0, dtype=F64), lambda: (_x(5, 3),)),
    "GRU.reference": (lambda: nn.GRU(3, 4, kernel="reference", rng=0, dtype=F64), lambda: (_x(4, 2, 3),)),
    "LSTM": (lambda: nn.LSTM(3, 4, bidirectional=True, rng=0, dtype=F64), lambda: (_x(4, 2, 3),)),
    "ConvGRU": (lambda: nn.ConvGRU(2, 3, 3, num_layers=2, rng=0, dtype=F64), lambda: (_x(3, 2, 2, 4, 4),)),
    "ConvGRU.batch_first": (lambda: nn.ConvGRU(2, 3, 3, batch_first=True, rng=0, dtype=F64),
                            lambda: (_x(2, 3, 2, 4, 4),)),
    "ConvGRUCell": (lambda: nn.ConvGRUCell(2, 3, 3, rng=0, dtype=F64), lambda: (_x(2, 2, 4, 4),)),
    "ReNetLayer": (lambda: nn.ReNetLayer(2, 3, 2, rng=0, dtype=F64), lambda: (_x(2, 2, 4, 4),)),
}


def _flat(value):
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _flat(v)]
    return [value]


def _wrong_shapes(shape):
    """Shapes a careless caller might pass instead of ``shape``; none of them equals it."""
    shape = tuple(shape)
    found = []
    for axis, size in enumerate(shape):
        for other in {1, size - 1, size + 1, 2 * size + 1} - {size}:
            if other >= 1:
                found.append(shape[:axis] + (other,) + shape[axis + 1:])
        found.append(shape[:axis] + shape[axis + 1:])        # an axis too few (often broadcasts)
    found.append((1,) + shape)                               # an axis too many
    found.append(shape + (1,))
    size = int(np.prod(shape))
    found.append((size,))                                    # the right size in another shape
    found.append(shape[::-1])
    return [s for s in dict.fromkeys(found) if s != shape]


def _forward(name):
    make, inputs = CASES[name]
    layer = make()
    outs = _flat(layer(*inputs()))
    return layer, [tuple(o.shape) for o in outs]


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=12, deadline=None, derandomize=True)
@given(data=st.data())
def test_backward_refuses_gradients_of_the_wrong_shape(name, data):
    layer, shapes = _forward(name)
    which = data.draw(st.integers(0, len(shapes) - 1), label="gradient argument")
    wrong = data.draw(st.sampled_from(_wrong_shapes(shapes[which])), label="wrong shape")
    grads = [np.ones(s) for s in shapes]
    grads[which] = np.ones(wrong)
    with pytest.raises(ValueError) as err:
        layer.backward(*grads)
    message = str(err.value)
    assert "\n" not in message and str(shapes[which]) in message and str(wrong) in message, message
    layer, shapes = _forward(name)                           # the right shapes still work
    layer.backward(*[np.ones(s) for s in shapes])


def test_convgru_with_no_time_step_is_refused_like_gru():
    with pytest.raises(ValueError, match="at least one time step"):
        nn.ConvGRU(2, 3, 3, rng=0, dtype=F64)(np.zeros((0, 2, 2, 4, 4)))
    with pytest.raises(ValueError, match="at least one time step"):
        nn.ConvGRU(2, 3, 3, batch_first=True, rng=0, dtype=F64)(np.zeros((2, 0, 2, 4, 4)))
    with pytest.raises(ValueError, match="empty"):
        nn.GRU(2, 3, rng=0, dtype=F64)(np.zeros((0, 2, 2)))


def test_the_cases_of_the_issue():
    """issue 13 §3, word for word: each of these used to return numbers."""
    cell = nn.GRUCell(3, 4, rng=0, dtype=F64)
    cell(_x(2, 3))
    with pytest.raises(ValueError, match=r"GRUCell.backward: dh_next must have shape \(2, 4\) .*got \(1, 4\)"):
        cell.backward(np.ones((1, 4)))
    for layer in (nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.Softmax()):
        layer(_x(2, 4))
        with pytest.raises(ValueError, match=r"must have shape \(2, 4\)"):
            layer.backward(np.ones((1, 4)))
    flatten = nn.Flatten()
    flatten(_x(2, 3, 4))
    with pytest.raises(ValueError, match=r"Flatten.backward: dout must have shape \(2, 12\)"):
        flatten.backward(np.ones((4, 6)))                    # the right size, the wrong shape
    convgru = nn.ConvGRU(2, 3, 3, num_layers=2, rng=0, dtype=F64)
    out, h_n = convgru(_x(3, 2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"ConvGRU.backward: dh_n must have shape \(2, 2, 3, 4, 4\)"):
        convgru.backward(np.ones_like(out), np.ones((1, 2, 3, 4, 4)))   # one layer's gradient for two layers


def _kernel_cases():
    """(name, backward(dout) after a forward) for kernels with no layer of their own or checked there first."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))

    def naive():
        out, cache = F.conv2d_naive_forward(x, w, None, 1, 1)
        return out.shape, lambda d: F.conv2d_naive_backward(d, cache)

    def im2col_conv():
        out, cache = F.conv2d_forward(x, w, None, 1, 1)
        return out.shape, lambda d: F.conv2d_backward(d, cache)

    def regroup():
        h_cols, cache = F.rows_to_columns_forward(rng.standard_normal((3, 2 * 4, 5)), 2, 4)
        return h_cols.shape, lambda d: F.rows_to_columns_backward(d, cache)

    def step(kind):
        xs, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
        gates = {"rnn": 1, "gru": 3, "lstm": 4}[kind]
        params = (rng.standard_normal((gates * 4, 3)), rng.standard_normal((gates * 4, 4)), None, None)
        if kind == "lstm":
            (h_next, _), cache = F.lstm_step_forward(xs, h, h.copy(), *params)
            return h_next.shape, lambda d: F.lstm_step_backward(d, None, cache)
        h_next, cache = getattr(F, f"{kind}_step_forward")(xs, h, *params)
        return h_next.shape, lambda d: getattr(F, f"{kind}_step_backward")(d, cache)

    def lstm_dc():
        xs, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
        params = (rng.standard_normal((16, 3)), rng.standard_normal((16, 4)), None, None)
        (h_next, _), cache = F.lstm_step_forward(xs, h, h.copy(), *params)
        return h_next.shape, lambda d: F.lstm_step_backward(np.ones(h_next.shape), d, cache)

    return {"conv2d_naive_backward": naive, "conv2d_backward": im2col_conv, "rows_to_columns_backward": regroup,
            "rnn_step_backward": lambda: step("rnn"), "gru_step_backward": lambda: step("gru"),
            "lstm_step_backward": lambda: step("lstm"), "lstm_step_backward.dc_next": lstm_dc}


@pytest.mark.parametrize("name", sorted(_kernel_cases()))
@settings(max_examples=8, deadline=None, derandomize=True)
@given(data=st.data())
def test_kernel_backward_refuses_gradients_of_the_wrong_shape(name, data):
    shape, backward = _kernel_cases()[name]()
    wrong = data.draw(st.sampled_from(_wrong_shapes(shape)), label="wrong shape")
    with pytest.raises(ValueError, match=r"must have shape " + re.escape(str(shape))):
        backward(np.ones(wrong))
    backward(np.ones(shape))
