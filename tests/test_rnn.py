"""Vanilla RNN (tanh and relu): kernels and layers against finite differences, PyTorch and golden files
(see tests/test_gru.py for the gradient-check settings and why the random data have fixed seeds)."""
from pathlib import Path

import numpy as np
import pytest

from minigru import backend, nn
from minigru import functional as F
from minigru.gradcheck import check_module, numerical_gradient, rel_error

GOLDEN = Path(__file__).parent / "golden" / "recurrent.npz"
TOL, EPS, TORCH_TOL = 1e-6, 1e-5, 1e-8


def _rnn_args(rng, xp, steps, batch, features, hidden, bias=True):
    def r(shape, scale=1.0):
        return xp.asarray(rng.standard_normal(shape) * scale)
    return [r((steps, batch, features)), r((batch, hidden)), r((hidden, features), 0.5),
            r((hidden, hidden), 0.5), r((hidden,), 0.5) if bias else None, r((hidden,), 0.5) if bias else None]


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 2, 4, 3), (5, 3, 2, 4)])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_rnn_sequence_kernel_gradcheck(xp, shape, nonlinearity, bias):
    rng = np.random.default_rng(sum(shape))
    args = _rnn_args(rng, xp, *shape, bias=bias)
    steps, batch, _, hidden = shape
    dhs = xp.asarray(rng.standard_normal((steps, batch, hidden)))
    dh_last = xp.asarray(rng.standard_normal((batch, hidden)))

    def outputs(_):
        hs, _cache = F.rnn_forward(*args, nonlinearity=nonlinearity)
        return hs.copy(), hs[-1].copy()

    _, cache = F.rnn_forward(*args, nonlinearity=nonlinearity)
    grads = F.rnn_backward(dhs, dh_last, cache)
    for array, grad in zip(args, grads):
        if array is None:
            assert grad is None
            continue
        assert rel_error(grad, numerical_gradient(outputs, array, [dhs, dh_last], eps=EPS)) <= TOL


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_step_kernel_gradcheck_and_agreement(xp, nonlinearity):
    rng = np.random.default_rng(4)
    x, h0, *weights = _rnn_args(rng, xp, 3, 2, 3, 4)
    dhs = xp.asarray(rng.standard_normal((3, 2, 4)))
    step_args = [x[0], h0, *weights]
    _, cache = F.rnn_step_forward(*step_args, nonlinearity=nonlinearity)
    grads = F.rnn_step_backward(dhs[0], cache)
    for array, grad in zip(step_args, grads):
        numeric = numerical_gradient(lambda _: F.rnn_step_forward(*step_args, nonlinearity=nonlinearity)[0],
                                     array, dhs[0], eps=EPS)
        assert rel_error(grad, numeric) <= TOL
    hs, cache = F.rnn_forward(x, h0, *weights, nonlinearity=nonlinearity)
    seq = F.rnn_backward(dhs, None, cache)
    h, caches = h0, []
    for t in range(3):
        h, c = F.rnn_step_forward(x[t], h, *weights, nonlinearity=nonlinearity)
        caches.append(c)
        assert rel_error(h, hs[t]) < 1e-12
    dh, sums = xp.zeros((2, 4)), [0, 0, 0, 0]
    for t in reversed(range(3)):
        dx, dh, *dparams = F.rnn_step_backward(dhs[t] + dh, caches[t])
        assert rel_error(dx, seq[0][t]) < 1e-10
        sums = [s + g for s, g in zip(sums, dparams)]
    assert rel_error(dh, seq[1]) < 1e-10
    for s, g in zip(sums, seq[2:]):
        assert rel_error(s, g) < 1e-10


LAYER_CASES = [
    dict(shape=(4, 2, 3), kw={}),
    dict(shape=(1, 1, 3), kw=dict(nonlinearity="relu")),
    dict(shape=(3, 2, 3), kw=dict(num_layers=2, bidirectional=True, nonlinearity="relu")),
    dict(shape=(2, 3, 3), kw=dict(num_layers=3, batch_first=True, bias=False)),
    dict(shape=(3, 2, 3), kw=dict(num_layers=2, dropout=0.3)),
]


@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: f"{c['shape']}-{c['kw']}")
def test_rnn_layer_gradcheck(backend_name, case):
    rng = np.random.default_rng(3)
    rnn = nn.RNN(3, 4, rng=0, **case["kw"])
    x = backend.to_backend(rng.standard_normal(case["shape"]))
    count = case["kw"].get("num_layers", 1) * (2 if case["kw"].get("bidirectional") else 1)
    h0 = backend.to_backend(rng.standard_normal((count, case["shape"][0 if case["kw"].get("batch_first") else 1], 4)))
    report = check_module(rnn, x, h0, eps=EPS, verbose=False)
    assert report.passed, str(report)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnncell_gradcheck(backend_name, nonlinearity):
    rng = np.random.default_rng(6)
    cell = nn.RNNCell(3, 4, nonlinearity=nonlinearity, rng=1)
    x, h = backend.to_backend(rng.standard_normal((2, 3))), backend.to_backend(rng.standard_normal((2, 4)))
    assert check_module(cell, x, h, eps=EPS, verbose=False).passed


def test_rnn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity"):
        F.rnn_forward(np.zeros((2, 1, 3)), None, np.zeros((4, 3)), np.zeros((4, 4)), None, None, "gelu")
    with pytest.raises(ValueError, match="RNN expected input_size 3"):
        nn.RNN(3, 4)(np.zeros((2, 1, 5), dtype=np.float32))


def _to_torch(torch, state):
    return {k: torch.from_numpy(backend.to_numpy(v).copy()) for k, v in state.items()}


@pytest.mark.parametrize("kw", [dict(), dict(nonlinearity="relu", num_layers=2, bidirectional=True),
                                dict(batch_first=True, bias=False)], ids=str)
def test_rnn_matches_torch(kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    ours = nn.RNN(3, 5, rng=0, dtype=np.float64, **kw)
    theirs = torch.nn.RNN(3, 5, **kw).double()
    theirs.load_state_dict(_to_torch(torch, ours.state_dict()))
    count = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    x = rng.standard_normal((2, 4, 3) if kw.get("batch_first") else (4, 2, 3))
    h0 = rng.standard_normal((count, 2, 5))
    tx, th0 = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    out, h_n = ours(x, h0)
    tout, th_n = theirs(tx, th0)
    dout, dh_n = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    dx, dh0 = ours.backward(dout, dh_n)
    torch.autograd.backward([tout, th_n], [torch.tensor(dout), torch.tensor(dh_n)])
    pairs = [(out, tout), (h_n, th_n), (dx, tx.grad), (dh0, th0.grad)]
    pairs += [(p.grad, dict(theirs.named_parameters())[name].grad) for name, p in ours.named_parameters()]
    for a, b in pairs:
        assert rel_error(a, b.detach().numpy()) <= TORCH_TOL


def test_rnncell_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    ours = nn.RNNCell(4, 3, nonlinearity="relu", rng=0, dtype=np.float64)
    theirs = torch.nn.RNNCell(4, 3, nonlinearity="relu").double()
    theirs.load_state_dict(_to_torch(torch, ours.state_dict()))
    x, h = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    tx, th = torch.tensor(x, requires_grad=True), torch.tensor(h, requires_grad=True)
    h1, th1 = ours(x, h), theirs(tx, th)
    dh1 = rng.standard_normal(h1.shape)
    dx, dh = ours.backward(dh1)
    th1.backward(torch.tensor(dh1))
    for a, b in [(h1, th1), (dx, tx.grad), (dh, th.grad)]:
        assert rel_error(a, b.detach().numpy()) <= TORCH_TOL
    for name, p in ours.named_parameters():
        assert rel_error(p.grad, dict(theirs.named_parameters())[name].grad.numpy()) <= TORCH_TOL


def _golden(case):
    with np.load(GOLDEN, allow_pickle=False) as data:
        prefix = case + "__"
        return {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}


@pytest.mark.parametrize("case, kw", [("rnn_tanh", dict(num_layers=2)),
                                      ("rnn_relu", dict(nonlinearity="relu", bidirectional=True))])
def test_rnn_matches_golden(case, kw):
    g = _golden(case)
    ours = nn.RNN(g["x"].shape[-1], g["h_n"].shape[-1], dtype=np.float64, **kw)
    ours.load_state_dict({k[len("param__"):]: v for k, v in g.items() if k.startswith("param__")})
    out, h_n = ours(g["x"], g["h0"])
    dx, dh0 = ours.backward(g["dout"], g["dh_n"])
    for a, b in [(out, "out"), (h_n, "h_n"), (dx, "dx"), (dh0, "dh0")]:
        assert rel_error(a, g[b]) <= TORCH_TOL, b
    for name, p in ours.named_parameters():
        assert rel_error(p.grad, g["grad__" + name]) <= TORCH_TOL


def test_rnncell_matches_golden():
    g = _golden("rnncell")
    cell = nn.RNNCell(g["x"].shape[-1], g["h"].shape[-1], dtype=np.float64)
    cell.load_state_dict({k[len("param__"):]: v for k, v in g.items() if k.startswith("param__")})
    assert rel_error(cell(g["x"], g["h"]), g["h_next"]) <= TORCH_TOL
    dx, dh = cell.backward(g["dh_next"])
    assert rel_error(dx, g["dx"]) <= TORCH_TOL and rel_error(dh, g["dh"]) <= TORCH_TOL
    for name, p in cell.named_parameters():
        assert rel_error(p.grad, g["grad__" + name]) <= TORCH_TOL
