"""The reference sequence kernels (a loop over the step kernels) against the fused sequence kernels.

Two independent implementations of the same recurrences: the fused kernels (one GEMM for all
input projections, column layout, pooled buffers, halved sigmoid rows) and the plain loop over the
readable step kernels. In float64 they must agree to rounding, forward and backward, for every
argument the layers pass (initial states or None, biases or None, both GRU conventions, both RNN
nonlinearities, extra gradients on the final states). The layers' ``kernel="reference"`` option
must give the fused layers' numbers, and must run on the step kernels found in their modules at
call time (the classroom replaces them by the students' code).
"""
import zlib

import numpy as np
import pytest

from minigru import functional as F
from minigru import nn
from minigru.functional import gru as gru_module
from minigru.nn import _recurrent as recurrent

SHAPES = [(1, 1, 1, 1), (1, 3, 2, 4), (4, 1, 3, 2), (3, 2, 5, 3), (6, 3, 2, 5)]   # (T, N, I, H)
TOL = dict(rtol=1e-10, atol=1e-12)


def _seed(*case):
    return zlib.crc32(repr(case).encode())


def _args(rng, steps, batch, features, hidden, gates, bias, with_state):
    x = rng.standard_normal((steps, batch, features))
    weights = [rng.standard_normal((gates * hidden, features)) * 0.5,
               rng.standard_normal((gates * hidden, hidden)) * 0.5]
    biases = [rng.standard_normal(gates * hidden) * 0.5 for _ in range(2)] if bias else [None, None]
    state = rng.standard_normal((batch, hidden)) if with_state else None
    return x, state, weights + biases


def _assert_all_close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, **TOL)


def _upstream(rng, steps, batch, hidden, with_dhs, with_dlast):
    dhs = rng.standard_normal((steps, batch, hidden)) if with_dhs else None
    dlast = rng.standard_normal((batch, hidden)) if with_dlast else None
    return dhs, dlast


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_reference_equals_fused(shape, reset_after, bias):
    rng = np.random.default_rng(_seed((shape, reset_after, bias)))
    steps, batch, features, hidden = shape
    for with_state, with_dhs, with_dlast in ((True, True, True), (False, True, False), (True, False, True)):
        x, h0, params = _args(rng, steps, batch, features, hidden, 3, bias, with_state)
        hs, cache = F.gru_forward(x, h0, *params, reset_after=reset_after)
        hs = hs.copy()
        ref_hs, ref_cache = F.gru_reference_forward(x, h0, *params, reset_after=reset_after)
        np.testing.assert_allclose(ref_hs, hs, **TOL)
        dhs, dlast = _upstream(rng, steps, batch, hidden, with_dhs, with_dlast)
        _assert_all_close(F.gru_reference_backward(dhs, dlast, ref_cache), F.gru_backward(dhs, dlast, cache))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_reference_equals_fused(shape, bias):
    rng = np.random.default_rng(_seed((shape, bias, "lstm")))
    steps, batch, features, hidden = shape
    for with_state, with_dhs, with_dlast in ((True, True, True), (False, True, False), (True, False, True)):
        x, h0, params = _args(rng, steps, batch, features, hidden, 4, bias, with_state)
        c0 = rng.standard_normal((batch, hidden)) if with_state else None
        (hs, c_n), cache = F.lstm_forward(x, h0, c0, *params)
        hs = hs.copy()
        (ref_hs, ref_c_n), ref_cache = F.lstm_reference_forward(x, h0, c0, *params)
        np.testing.assert_allclose(ref_hs, hs, **TOL)
        np.testing.assert_allclose(ref_c_n, c_n, **TOL)
        dhs, dh_last = _upstream(rng, steps, batch, hidden, with_dhs, with_dlast)
        dc_last = rng.standard_normal((batch, hidden)) if with_dlast else None
        _assert_all_close(F.lstm_reference_backward(dhs, dh_last, dc_last, ref_cache),
                          F.lstm_backward(dhs, dh_last, dc_last, cache))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_rnn_reference_equals_fused(shape, nonlinearity, bias):
    rng = np.random.default_rng(_seed((shape, nonlinearity, bias)))
    steps, batch, features, hidden = shape
    for with_state, with_dhs, with_dlast in ((True, True, True), (False, True, False), (True, False, True)):
        x, h0, params = _args(rng, steps, batch, features, hidden, 1, bias, with_state)
        hs, cache = F.rnn_forward(x, h0, *params, nonlinearity=nonlinearity)
        hs = hs.copy()
        ref_hs, ref_cache = F.rnn_reference_forward(x, h0, *params, nonlinearity=nonlinearity)
        np.testing.assert_allclose(ref_hs, hs, **TOL)
        dhs, dlast = _upstream(rng, steps, batch, hidden, with_dhs, with_dlast)
        _assert_all_close(F.rnn_reference_backward(dhs, dlast, ref_cache), F.rnn_backward(dhs, dlast, cache))


@pytest.mark.parametrize("kernels", [(F.gru_forward, F.gru_reference_forward, 3),
                                     (F.rnn_forward, F.rnn_reference_forward, 1)])
@pytest.mark.parametrize("bad_shape", [(0, 2, 3), (2, 0, 3)])
def test_reference_rejects_what_the_fused_kernel_rejects(kernels, bad_shape):
    fused, reference, gates = kernels
    x = np.zeros(bad_shape)
    params = (np.zeros((gates * 2, 3)), np.zeros((gates * 2, 2)), None, None)
    with pytest.raises(ValueError, match="empty"):
        fused(x, None, *params)
    with pytest.raises(ValueError, match="empty"):
        reference(x, None, *params)


def test_reference_backward_checks_the_gradient_shapes():
    rng = np.random.default_rng(0)
    x, h0, params = _args(rng, 3, 2, 4, 5, 3, True, True)
    _, cache = F.gru_reference_forward(x, h0, *params)
    with pytest.raises(ValueError, match=r"dhs must have shape \(3, 2, 5\)"):
        F.gru_reference_backward(np.zeros((3, 1, 5)), None, cache)
    with pytest.raises(ValueError, match=r"dh_last must have shape \(2, 5\)"):
        F.gru_reference_backward(None, np.zeros((1, 5)), cache)


LAYERS = [
    lambda kernel: nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True, kernel=kernel, rng=1,
                          dtype=np.float64),
    lambda kernel: nn.GRU(3, 4, reset_after=False, bias=False, kernel=kernel, rng=2, dtype=np.float64),
    lambda kernel: nn.LSTM(3, 4, num_layers=2, bidirectional=True, kernel=kernel, rng=3, dtype=np.float64),
    lambda kernel: nn.RNN(3, 4, num_layers=2, nonlinearity="relu", kernel=kernel, rng=4, dtype=np.float64),
]


def _flat(value):
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _flat(v)]
    return [value]


@pytest.mark.parametrize("make", LAYERS)
@pytest.mark.parametrize("batched", [True, False])
def test_layer_kernel_option_gives_the_fused_layers_numbers(make, batched):
    rng = np.random.default_rng(5)
    fused, reference = make("fused"), make("reference")
    assert "kernel='reference'" in repr(reference) and "kernel" not in repr(fused)
    x = rng.standard_normal((2, 3, 3) if batched else (3, 3))
    outs = [_flat(layer(x)) for layer in (fused, reference)]
    for a, b in zip(*outs):
        np.testing.assert_allclose(b, a, **TOL)
    douts = [rng.standard_normal(o.shape) for o in outs[0]]
    grads = [_flat(layer.backward(*douts)) for layer in (fused, reference)]
    for a, b in zip(*grads):
        np.testing.assert_allclose(b, a, **TOL)
    for (name, p), (_, q) in zip(fused.named_parameters(), reference.named_parameters()):
        np.testing.assert_allclose(q.grad, p.grad, err_msg=name, **TOL)


@pytest.mark.parametrize("cls", [nn.GRU, nn.LSTM, nn.RNN])
@pytest.mark.parametrize("bad", ["fast", "", "None", 1, 1.0])
def test_bad_kernel_names_are_refused_in_one_line(cls, bad):
    with pytest.raises(ValueError, match=r"^" + cls.__name__ + r": kernel must be 'fused' or 'reference', got ") as err:
        cls(2, 3, kernel=bad)
    assert "\n" not in str(err.value)
    layer = cls(2, 3)
    for value in (bad, None):     # None means "the default" when building a layer, never as its kernel
        with pytest.raises(ValueError, match="kernel must be"):
            layer.kernel = value


@pytest.mark.parametrize("cls", [nn.GRU, nn.LSTM, nn.RNN])
def test_layers_built_without_kernel_take_their_modules_default(cls, monkeypatch):
    """The library's default is the fused kernel; a classroom copy rewrites DEFAULT_KERNELS (make-assignment)."""
    assert recurrent.DEFAULT_KERNELS == {"rnn": "fused", "gru": "fused", "lstm": "fused"}
    assert cls(2, 3).kernel == cls(2, 3, kernel=None).kernel == "fused"
    assert cls.step_module == cls.__name__.lower()
    monkeypatch.setitem(recurrent.DEFAULT_KERNELS, cls.step_module, "reference")
    assert cls(2, 3).kernel == "reference" and cls(2, 3, kernel="fused").kernel == "fused"
    others = [c for c in (nn.GRU, nn.LSTM, nn.RNN) if c is not cls]
    assert [c(2, 3).kernel for c in others] == ["fused", "fused"]


def test_reference_layer_runs_on_the_step_kernels_of_the_module(monkeypatch):
    """A classroom copy replaces gru_step_forward / gru_step_backward: the reference layer must use them."""
    calls = {"forward": 0, "backward": 0}
    step_forward, step_backward = gru_module.gru_step_forward, gru_module.gru_step_backward

    def counting_forward(*args, **kwargs):
        calls["forward"] += 1
        return step_forward(*args, **kwargs)

    def counting_backward(*args, **kwargs):
        calls["backward"] += 1
        return step_backward(*args, **kwargs)

    monkeypatch.setattr(gru_module, "gru_step_forward", counting_forward)
    monkeypatch.setattr(gru_module, "gru_step_backward", counting_backward)
    layer = nn.GRU(2, 3, num_layers=2, kernel="reference", rng=0, dtype=np.float64)
    out, _ = layer(np.ones((4, 1, 2)))
    layer.backward(np.ones_like(out))
    assert calls == {"forward": 8, "backward": 8}      # 4 steps x 2 layers, each way
