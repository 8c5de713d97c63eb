"""LSTM: kernels and layers against finite differences, PyTorch and golden files (see tests/test_gru.py
for the gradient-check settings and why the random data have fixed seeds)."""
from pathlib import Path

import numpy as np
import pytest

from minigru import backend, nn
from minigru import functional as F
from minigru.gradcheck import check_module, numerical_gradient, rel_error

GOLDEN = Path(__file__).parent / "golden" / "recurrent.npz"
TOL, EPS, TORCH_TOL = 1e-6, 1e-5, 1e-8


def _lstm_args(rng, xp, steps, batch, features, hidden, bias=True):
    def r(shape, scale=1.0):
        return xp.asarray(rng.standard_normal(shape) * scale)
    return [r((steps, batch, features)), r((batch, hidden)), r((batch, hidden)),
            r((4 * hidden, features), 0.5), r((4 * hidden, hidden), 0.5),
            r((4 * hidden,), 0.5) if bias else None, r((4 * hidden,), 0.5) if bias else None]


class LSTMWithStates(nn.Module):
    """forward(x, h0, c0) around an LSTM, so that check_module sees h0 and c0 as separate inputs."""

    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x, h0, c0):
        return self.lstm(x, (h0, c0))

    def backward(self, dout, dh_n, dc_n):
        dx, (dh0, dc0) = self.lstm.backward(dout, dh_n, dc_n)
        return dx, dh0, dc0


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 2, 4, 3), (4, 3, 2, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_sequence_kernel_gradcheck(xp, shape, bias):
    rng = np.random.default_rng(sum(shape))
    args = _lstm_args(rng, xp, *shape, bias=bias)
    steps, batch, _, hidden = shape
    douts = [xp.asarray(rng.standard_normal(s)) for s in [(steps, batch, hidden), (batch, hidden), (batch, hidden)]]

    def outputs(_):
        (hs, c_n), _cache = F.lstm_forward(*args)
        return hs.copy(), hs[-1].copy(), c_n

    _, cache = F.lstm_forward(*args)
    grads = F.lstm_backward(*douts, cache)
    for array, grad in zip(args, grads):
        if array is None:
            assert grad is None
            continue
        assert rel_error(grad, numerical_gradient(outputs, array, douts, eps=EPS)) <= TOL


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_step_kernel_gradcheck(xp, bias):
    rng = np.random.default_rng(1)
    x, h, c, *weights = _lstm_args(rng, xp, 1, 3, 4, 2, bias=bias)
    args = [x[0], h, c, *weights]
    douts = [xp.asarray(rng.standard_normal((3, 2))) for _ in range(2)]
    _, cache = F.lstm_step_forward(*args)
    grads = F.lstm_step_backward(*douts, cache)
    for array, grad in zip(args, grads):
        if array is None:
            continue
        numeric = numerical_gradient(lambda _: F.lstm_step_forward(*args)[0], array, douts, eps=EPS)
        assert rel_error(grad, numeric) <= TOL


def test_lstm_step_and_sequence_kernels_agree(xp):
    rng = np.random.default_rng(2)
    x, h0, c0, *weights = _lstm_args(rng, xp, 4, 3, 2, 5)
    dhs = xp.asarray(rng.standard_normal((4, 3, 5)))
    dc_last = xp.asarray(rng.standard_normal((3, 5)))
    (hs, c_n), cache = F.lstm_forward(x, h0, c0, *weights)
    seq = F.lstm_backward(dhs, None, dc_last, cache)
    h, c, caches = h0, c0, []
    for t in range(4):
        (h, c), step_cache = F.lstm_step_forward(x[t], h, c, *weights)
        caches.append(step_cache)
        assert rel_error(h, hs[t]) < 1e-12
    assert rel_error(c, c_n) < 1e-12
    dh, dc, sums = xp.zeros((3, 5)), dc_last, [0, 0, 0, 0]
    for t in reversed(range(4)):
        dx, dh, dc, *dparams = F.lstm_step_backward(dhs[t] + dh, dc, caches[t])
        assert rel_error(dx, seq[0][t]) < 1e-10
        sums = [s + g for s, g in zip(sums, dparams)]
    assert rel_error(dh, seq[1]) < 1e-10 and rel_error(dc, seq[2]) < 1e-10
    for s, g in zip(sums, seq[3:]):
        assert rel_error(s, g) < 1e-10


# A deep stack without biases and with zero initial states has top-layer gradient entries of ~1e-8
# (min/max ratio 1e-6): too small for float64 finite differences, so bias=False is checked at depth 2.
LAYER_CASES = [
    dict(shape=(4, 2, 3), kw={}, seed=3),
    dict(shape=(1, 1, 3), kw={}, seed=3),
    dict(shape=(3, 2, 3), kw=dict(num_layers=2, bidirectional=True), seed=8),
    dict(shape=(2, 3, 3), kw=dict(num_layers=3, batch_first=True), seed=8),
    dict(shape=(2, 3, 3), kw=dict(num_layers=2, batch_first=True, bias=False), seed=6),
    dict(shape=(3, 2, 3), kw=dict(num_layers=2, dropout=0.4), seed=3),
]


@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: f"{c['shape']}-{c['kw']}")
def test_lstm_layer_gradcheck(backend_name, case):
    rng = np.random.default_rng(case["seed"])
    lstm = nn.LSTM(3, 4, rng=0, **case["kw"])
    x = backend.to_backend(rng.standard_normal(case["shape"]))
    assert check_module(lstm, x, eps=EPS, verbose=False).passed           # hx=None; douts for (out, h_n, c_n)
    count = case["kw"].get("num_layers", 1) * (2 if case["kw"].get("bidirectional") else 1)
    batch = case["shape"][0 if case["kw"].get("batch_first") else 1]
    h0, c0 = (backend.to_backend(rng.standard_normal((count, batch, 4))) for _ in range(2))
    report = check_module(LSTMWithStates(lstm), x, h0, c0, eps=EPS, verbose=False)
    assert report.passed, str(report)


@pytest.mark.parametrize("batched", [True, False])
def test_lstmcell_gradcheck(backend_name, batched):
    rng = np.random.default_rng(5)
    cell = nn.LSTMCell(3, 4, rng=2)
    x = backend.to_backend(rng.standard_normal((2, 3) if batched else (3,)))
    assert check_module(cell, x, eps=EPS, verbose=False).passed


@pytest.mark.parametrize("batch, hidden", [(1, 4), (3, 1)])
def test_lstm_outputs_survive_reuse_of_work_buffers(batch, hidden):
    lstm = nn.LSTM(3, hidden, rng=0)
    x = np.random.default_rng(0).standard_normal((4, batch, 3)).astype(np.float32)
    out, (h_n, c_n) = lstm(x)
    kept = [a.copy() for a in (out, h_n, c_n)]
    lstm.backward(np.ones_like(out))
    lstm(2 * x)
    lstm.backward(np.ones_like(out))
    assert all(np.array_equal(a, b) for a, b in zip((out, h_n, c_n), kept))


def test_lstm_rejects_bad_inputs():
    lstm = nn.LSTM(5, 3, num_layers=2)
    x = np.zeros((4, 2, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="LSTM expected input_size 5 but got x with 6 features"):
        lstm(np.zeros((4, 2, 6), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected c0 of shape \(2, 2, 3\)"):
        lstm(x, (np.zeros((2, 2, 3), dtype=np.float32), np.zeros((2, 3), dtype=np.float32)))
    with pytest.raises(TypeError, match="tuple"):
        lstm(x, np.zeros((2, 2, 3), dtype=np.float32))
    lstm(x)
    with pytest.raises(ValueError, match="c_n must have shape"):
        lstm.backward(None, None, np.zeros((1, 2, 3), dtype=np.float32))


def _to_torch(torch, state):
    return {k: torch.from_numpy(backend.to_numpy(v).copy()) for k, v in state.items()}


@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True),
                                dict(batch_first=True, num_layers=2), dict(bias=False)], ids=str)
def test_lstm_matches_torch(kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    ours = nn.LSTM(3, 5, rng=0, dtype=np.float64, **kw)
    theirs = torch.nn.LSTM(3, 5, **kw).double()
    theirs.load_state_dict(_to_torch(torch, ours.state_dict()))
    count = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    x = rng.standard_normal((2, 4, 3) if kw.get("batch_first") else (4, 2, 3))
    h0, c0 = rng.standard_normal((count, 2, 5)), rng.standard_normal((count, 2, 5))
    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    out, (h_n, c_n) = ours(x, (h0, c0))
    tout, (th_n, tc_n) = theirs(tx, (th0, tc0))
    douts = [rng.standard_normal(a.shape) for a in (out, h_n, c_n)]
    dx, (dh0, dc0) = ours.backward(*douts)
    torch.autograd.backward([tout, th_n, tc_n], [torch.tensor(d) for d in douts])
    pairs = [(out, tout), (h_n, th_n), (c_n, tc_n), (dx, tx.grad), (dh0, th0.grad), (dc0, tc0.grad)]
    pairs += [(p.grad, dict(theirs.named_parameters())[name].grad) for name, p in ours.named_parameters()]
    for a, b in pairs:
        assert rel_error(a, b.detach().numpy()) <= TORCH_TOL


def test_lstmcell_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    ours = nn.LSTMCell(4, 3, rng=0, dtype=np.float64)
    theirs = torch.nn.LSTMCell(4, 3).double()
    theirs.load_state_dict(_to_torch(torch, ours.state_dict()))
    x, h, c = rng.standard_normal((5, 4)), rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    h1, c1 = ours(x, (h, c))
    th1, tc1 = theirs(tx, (th, tc))
    dh1, dc1 = rng.standard_normal(h1.shape), rng.standard_normal(c1.shape)
    dx, (dh, dc) = ours.backward(dh1, dc1)
    torch.autograd.backward([th1, tc1], [torch.tensor(dh1), torch.tensor(dc1)])
    for a, b in [(h1, th1), (c1, tc1), (dx, tx.grad), (dh, th.grad), (dc, tc.grad)]:
        assert rel_error(a, b.detach().numpy()) <= TORCH_TOL
    for name, p in ours.named_parameters():
        assert rel_error(p.grad, dict(theirs.named_parameters())[name].grad.numpy()) <= TORCH_TOL


def _golden(case):
    with np.load(GOLDEN, allow_pickle=False) as data:
        prefix = case + "__"
        return {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}


@pytest.mark.parametrize("case, kw", [("lstm", dict(num_layers=2, bidirectional=True)),
                                      ("lstm_batch_first", dict(batch_first=True, bias=False))])
def test_lstm_matches_golden(case, kw):
    g = _golden(case)
    ours = nn.LSTM(g["x"].shape[-1], g["h_n"].shape[-1], dtype=np.float64, **kw)
    ours.load_state_dict({k[len("param__"):]: v for k, v in g.items() if k.startswith("param__")})
    out, (h_n, c_n) = ours(g["x"], (g["h0"], g["c0"]))
    dx, (dh0, dc0) = ours.backward(g["dout"], g["dh_n"], g["dc_n"])
    for a, b in [(out, "out"), (h_n, "h_n"), (c_n, "c_n"), (dx, "dx"), (dh0, "dh0"), (dc0, "dc0")]:
        assert rel_error(a, g[b]) <= TORCH_TOL, b
    for name, p in ours.named_parameters():
        assert rel_error(p.grad, g["grad__" + name]) <= TORCH_TOL


def test_lstmcell_matches_golden():
    g = _golden("lstmcell")
    cell = nn.LSTMCell(g["x"].shape[-1], g["h"].shape[-1], dtype=np.float64)
    cell.load_state_dict({k[len("param__"):]: v for k, v in g.items() if k.startswith("param__")})
    h1, c1 = cell(g["x"], (g["h"], g["c"]))
    dx, (dh, dc) = cell.backward(g["dh_next"], g["dc_next"])
    for a, b in [(h1, "h_next"), (c1, "c_next"), (dx, "dx"), (dh, "dh"), (dc, "dc")]:
        assert rel_error(a, g[b]) <= TORCH_TOL, b
    for name, p in cell.named_parameters():
        assert rel_error(p.grad, g["grad__" + name]) <= TORCH_TOL
