"""GRU: kernels and layers against finite differences, an independent textbook GRU, PyTorch and golden files.

Gradient checks use float64, centred differences with step EPS = 1e-5 and the
max relative error of docs/derivations.md eq. (G2) <= 1e-6. The random data
have fixed seeds: in about 3% of random draws some gradient entry cancels to
~1e-6 of its neighbours' size, and then no float64 finite difference resolves
it to 1e-6 *relative* error (round-off alone is ~1e-11 absolute). That is a
limit of the measure, not of the code; the PyTorch comparisons (1e-8 relative,
exact arithmetic on both sides) cover every entry.
"""
from pathlib import Path

import numpy as np
import pytest

from minigru import backend, nn
from minigru import functional as F
from minigru.gradcheck import check_module, numerical_gradient, rel_error

GOLDEN = Path(__file__).parent / "golden" / "recurrent.npz"
TOL = 1e-6    # max relative error of a gradient check (docs/derivations.md eq. G2)
EPS = 1e-5    # finite-difference step (eq. G1)
TORCH_TOL = 1e-8


def _random(rng, xp, shape, scale=1.0):
    return xp.asarray(rng.standard_normal(shape) * scale)


def _gru_args(rng, xp, steps, batch, features, hidden, bias=True):
    x = _random(rng, xp, (steps, batch, features))
    h0 = _random(rng, xp, (batch, hidden))
    w_ih = _random(rng, xp, (3 * hidden, features), 0.5)
    w_hh = _random(rng, xp, (3 * hidden, hidden), 0.5)
    b_ih = _random(rng, xp, (3 * hidden,), 0.5) if bias else None
    b_hh = _random(rng, xp, (3 * hidden,), 0.5) if bias else None
    return [x, h0, w_ih, w_hh, b_ih, b_hh]


def textbook_gru(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after):
    """An independent per-step GRU: separate gate matrices, σ(a) = 1 / (1 + e^{-a})."""
    w_ir, w_iz, w_in = np.split(w_ih, 3)
    w_hr, w_hz, w_hn = np.split(w_hh, 3)
    b_ir, b_iz, b_in = np.split(b_ih, 3)
    b_hr, b_hz, b_hn = np.split(b_hh, 3)
    h, outputs = h0, []
    for x_t in x:
        r = 1 / (1 + np.exp(-(x_t @ w_ir.T + b_ir + h @ w_hr.T + b_hr)))
        z = 1 / (1 + np.exp(-(x_t @ w_iz.T + b_iz + h @ w_hz.T + b_hz)))
        if reset_after:
            n = np.tanh(x_t @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
        else:
            n = np.tanh(x_t @ w_in.T + b_in + (r * h) @ w_hn.T + b_hn)
        h = (1 - z) * n + z * h
        outputs.append(h)
    return np.stack(outputs)


# ------------------------------------------------------------------ kernels
SHAPES = [(1, 1, 1, 1), (3, 2, 4, 3), (5, 1, 3, 2), (2, 4, 5, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_sequence_kernel_gradcheck(xp, shape, reset_after, bias):
    rng = np.random.default_rng(sum(shape))
    args = _gru_args(rng, xp, *shape, bias=bias)
    dhs = _random(rng, xp, (shape[0], shape[1], shape[3]))
    dh_last = _random(rng, xp, (shape[1], shape[3]))

    def outputs(_):
        hs, _cache = F.gru_forward(*args, reset_after=reset_after)
        return hs.copy(), hs[-1].copy()

    _, cache = F.gru_forward(*args, reset_after=reset_after)
    grads = F.gru_backward(dhs, dh_last, cache)
    for name, array, grad in zip(["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"], args, grads):
        if array is None:
            assert grad is None
            continue
        numeric = numerical_gradient(outputs, array, [dhs, dh_last], eps=EPS)
        assert rel_error(grad, numeric) <= TOL, name


@pytest.mark.parametrize("dhs_given, dh_last_given", [(True, False), (False, True)])
def test_gru_kernel_optional_upstream_and_h0(xp, dhs_given, dh_last_given):
    rng = np.random.default_rng(7)
    args = _gru_args(rng, xp, 3, 2, 3, 4)
    args[1] = None  # h0 = None means zeros
    dhs = _random(rng, xp, (3, 2, 4)) if dhs_given else None
    dh_last = _random(rng, xp, (2, 4)) if dh_last_given else None
    hs, cache = F.gru_forward(*args)
    zeros_hs, _ = F.gru_forward(args[0], xp.zeros((2, 4)), *args[2:])
    assert rel_error(hs, zeros_hs) == 0
    grads = F.gru_backward(dhs, dh_last, cache)
    full_dhs = dhs if dhs is not None else xp.zeros((3, 2, 4))
    if dh_last is not None:
        full_dhs = full_dhs.copy()
        full_dhs[-1] += dh_last
    _, cache = F.gru_forward(*args)
    expected = F.gru_backward(full_dhs, None, cache)
    for g, e in zip(grads, expected):
        assert rel_error(g, e) < 1e-12


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_step_kernel_gradcheck(xp, reset_after, bias):
    rng = np.random.default_rng(0)
    x, h, w_ih, w_hh, b_ih, b_hh = _gru_args(rng, xp, 1, 3, 4, 5, bias=bias)
    args = [x[0], h, w_ih, w_hh, b_ih, b_hh]
    dh_next = _random(rng, xp, (3, 5))
    _, cache = F.gru_step_forward(*args, reset_after=reset_after)
    grads = F.gru_step_backward(dh_next, cache)
    for array, grad in zip(args, grads):
        if array is None:
            assert grad is None
            continue
        numeric = numerical_gradient(lambda _: F.gru_step_forward(*args, reset_after=reset_after)[0],
                                     array, dh_next, eps=EPS)
        assert rel_error(grad, numeric) <= TOL


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_step_and_sequence_kernels_agree(xp, reset_after):
    rng = np.random.default_rng(11)
    x, h0, *weights = _gru_args(rng, xp, 4, 3, 2, 5)
    dhs = _random(rng, xp, (4, 3, 5))
    hs, cache = F.gru_forward(x, h0, *weights, reset_after=reset_after)
    seq_grads = F.gru_backward(dhs, None, cache)
    h, caches = h0, []
    for t in range(4):
        h, step_cache = F.gru_step_forward(x[t], h, *weights, reset_after=reset_after)
        caches.append(step_cache)
        assert rel_error(h, hs[t]) < 1e-12
    dh, sums = xp.zeros((3, 5)), [0, 0, 0, 0]
    for t in reversed(range(4)):
        dx, dh, *dparams = F.gru_step_backward(dhs[t] + dh, caches[t])
        assert rel_error(dx, seq_grads[0][t]) < 1e-10
        sums = [s + g for s, g in zip(sums, dparams)]
    assert rel_error(dh, seq_grads[1]) < 1e-10
    for s, g in zip(sums, seq_grads[2:]):
        assert rel_error(s, g) < 1e-10


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_forward_matches_textbook(reset_after):
    rng = np.random.default_rng(5)
    args = _gru_args(rng, np, 6, 3, 4, 5)
    hs, _ = F.gru_forward(*args, reset_after=reset_after)
    assert rel_error(hs, textbook_gru(*args, reset_after)) < 1e-12
    other = textbook_gru(*args, not reset_after)
    assert np.max(np.abs(hs - other)) > 1e-3  # the two conventions really differ


def test_gru_kernel_float32_runs_in_float32():
    rng = np.random.default_rng(0)
    args = [None if a is None else a.astype(np.float32) for a in _gru_args(rng, np, 3, 2, 3, 4)]
    hs, cache = F.gru_forward(*args)
    grads = F.gru_backward(np.ones_like(hs), None, cache)
    assert hs.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)


@pytest.mark.parametrize("batch, hidden", [(1, 4), (3, 1), (2, 3)])
def test_gru_outputs_survive_reuse_of_work_buffers(batch, hidden):
    # The kernels recycle their internal buffers; what they return must never alias one of them.
    gru = nn.GRU(3, hidden, num_layers=2, rng=0)
    x = np.random.default_rng(0).standard_normal((5, batch, 3)).astype(np.float32)
    out, h_n = gru(x)
    kept = out.copy(), h_n.copy()
    dx, dh0 = gru.backward(np.ones_like(out))
    kept_grads = dx.copy(), dh0.copy()
    for _ in range(2):
        gru(2 * x)
        gru.backward(np.ones_like(out))
    assert np.array_equal(out, kept[0]) and np.array_equal(h_n, kept[1])
    assert np.array_equal(dx, kept_grads[0]) and np.array_equal(dh0, kept_grads[1])


def test_gru_cache_is_consumed_once():
    args = _gru_args(np.random.default_rng(0), np, 2, 2, 3, 4)
    hs, cache = F.gru_forward(*args)
    F.gru_backward(np.ones_like(hs), None, cache)
    with pytest.raises(RuntimeError, match="already used"):
        F.gru_backward(np.ones_like(hs), None, cache)


def test_gru_kernel_rejects_bad_shapes_and_dtypes():
    x, h0, w_ih, w_hh, b_ih, b_hh = _gru_args(np.random.default_rng(0), np, 2, 2, 3, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(T, N, I\)"):
        F.gru_forward(x[0], h0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="weight_ih must have shape"):
        F.gru_forward(x, h0, w_ih[:, :2], w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="h0 must have shape"):
        F.gru_forward(x, h0[:1], w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(TypeError, match="dtype"):
        F.gru_forward(x.astype(np.float32), h0, w_ih, w_hh, b_ih, b_hh)


# ------------------------------------------------------------------ layers: gradient checks
LAYER_CASES = [
    dict(shape=(4, 2, 3), kw={}, h0=False, seed=2),
    dict(shape=(1, 1, 3), kw={}, h0=True, seed=2),                                      # T = 1, batch 1
    dict(shape=(3, 2, 3), kw=dict(num_layers=2, bidirectional=True), h0=True, seed=2),
    dict(shape=(2, 3, 3), kw=dict(num_layers=3, batch_first=True, bias=False), h0=False, seed=6),
    dict(shape=(3, 2, 3), kw=dict(num_layers=2, bidirectional=True, reset_after=False), h0=True, seed=2),
    dict(shape=(4, 3), kw=dict(num_layers=2), h0=True, seed=2),                         # unbatched (T, I)
]


@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: f"{c['shape']}-{c['kw']}-h0={c['h0']}")
def test_gru_layer_gradcheck(backend_name, case):
    rng = np.random.default_rng(case["seed"])
    gru = nn.GRU(3, 4, rng=0, **case["kw"])
    x = backend.to_backend(rng.standard_normal(case["shape"]))
    inputs = [x]
    if case["h0"]:
        layers = case["kw"].get("num_layers", 1) * (2 if case["kw"].get("bidirectional") else 1)
        batch = () if len(case["shape"]) == 2 else (case["shape"][0 if case["kw"].get("batch_first") else 1],)
        inputs.append(backend.to_backend(rng.standard_normal((layers, *batch, 4))))
    report = check_module(gru, *inputs, eps=EPS, tol=TOL, verbose=False)
    assert report.passed, str(report)


def test_gru_dropout_between_layers_gradcheck():
    gru = nn.GRU(3, 4, num_layers=3, dropout=0.5, rng=0)
    report = check_module(gru, np.random.default_rng(1).standard_normal((3, 2, 3)), eps=EPS, verbose=False)
    assert report.passed, str(report)


@pytest.mark.parametrize("kw", [{}, dict(reset_after=False), dict(bias=False)])
@pytest.mark.parametrize("batched", [True, False])
def test_grucell_gradcheck(backend_name, kw, batched):
    rng = np.random.default_rng(6)
    cell = nn.GRUCell(3, 5, rng=1, **kw)
    x = backend.to_backend(rng.standard_normal((2, 3) if batched else (3,)))
    h = backend.to_backend(rng.standard_normal((2, 5) if batched else (5,)))
    assert check_module(cell, x, h, eps=EPS, verbose=False).passed
    assert check_module(cell, x, None, eps=EPS, verbose=False).passed


# ------------------------------------------------------------------ layers: behaviour
def test_gru_parameters_named_shaped_and_initialised_like_torch():
    gru = nn.GRU(5, 4, num_layers=2, bidirectional=True, rng=0)
    expected = {}
    for layer, features in ((0, 5), (1, 8)):
        for sfx in ("", "_reverse"):
            expected.update({f"weight_ih_l{layer}{sfx}": (12, features), f"weight_hh_l{layer}{sfx}": (12, 4),
                             f"bias_ih_l{layer}{sfx}": (12,), f"bias_hh_l{layer}{sfx}": (12,)})
    shapes = {k: v.shape for k, v in gru.state_dict().items()}
    assert shapes == expected and list(shapes) == list(expected)
    for p in gru.parameters():
        assert p.dtype == np.float32 and np.all(np.abs(backend.to_numpy(p.data)) <= 0.5)
    same = nn.GRU(5, 4, num_layers=2, bidirectional=True, rng=0)
    assert all(np.array_equal(a, b) for a, b in zip(gru.state_dict().values(), same.state_dict().values()))
    assert "bias_ih_l0" not in nn.GRU(5, 4, bias=False).state_dict()


def test_gru_dropout_only_in_training():
    x = np.random.default_rng(0).standard_normal((3, 2, 3)).astype(np.float32)
    plain = nn.GRU(3, 4, num_layers=2, rng=0)
    dropped = nn.GRU(3, 4, num_layers=2, dropout=0.5, rng=0)
    assert not np.allclose(dropped(x)[0], plain(x)[0])
    dropped.eval()
    assert np.array_equal(dropped(x)[0], plain(x)[0])
    all_dropped = nn.GRU(3, 4, num_layers=2, dropout=1.0, rng=0)
    out, _ = all_dropped(x)  # the second layer sees zeros: its output depends on its weights only
    assert np.allclose(out[:, 0], out[:, 1])


def test_gru_no_grad_keeps_no_cache():
    gru = nn.GRU(3, 4, rng=0)
    x = np.ones((2, 1, 3), dtype=np.float32)
    with nn.no_grad():
        out, _ = gru(x)
    with pytest.raises(RuntimeError, match="forward"):
        gru.backward(np.ones_like(out))


def test_gru_backward_accumulates_and_accepts_none():
    gru = nn.GRU(3, 4, rng=0).double()
    x = np.random.default_rng(0).standard_normal((3, 2, 3))
    out, _ = gru(x)
    gru.backward(np.ones_like(out), None)
    first = gru.weight_ih_l0.grad.copy()
    gru(x)
    gru.backward(np.ones_like(out))
    assert np.allclose(gru.weight_ih_l0.grad, 2 * first)
    gru.zero_grad()
    gru(x)
    dx_none, dh0_none = gru.backward(None, None)
    assert np.all(dx_none == 0) and np.all(dh0_none == 0) and np.all(gru.weight_hh_l0.grad == 0)


def test_gru_rejects_bad_inputs():
    gru = nn.GRU(96, 8, num_layers=2, batch_first=True, rng=0)
    message = "GRU expected input_size 96 but got x with 32 features; with batch_first=True"
    with pytest.raises(ValueError, match=message):
        gru(np.zeros((4, 5, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="4-D shape"):
        gru(np.zeros((1, 4, 5, 96), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected h0 of shape \(2, 4, 8\)"):
        gru(np.zeros((4, 5, 96), dtype=np.float32), np.zeros((1, 4, 8), dtype=np.float32))
    with pytest.raises(TypeError, match="float32 but x is float64"):
        gru(np.zeros((4, 5, 96)))
    with pytest.raises(TypeError, match="floating-point"):
        gru(np.zeros((4, 5, 96), dtype=np.int64))
    with pytest.raises(TypeError, match="NumPy or CuPy array"):
        gru([[0.0] * 96])
    gru(np.zeros((4, 5, 96), dtype=np.float32))
    with pytest.raises(ValueError, match="dout must have shape"):
        gru.backward(np.zeros((5, 4, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="dropout"):
        nn.GRU(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size"):
        nn.GRU(3, 0)
    with pytest.raises(ValueError, match="GRUCell expected h of shape"):
        nn.GRUCell(3, 4)(np.zeros((2, 3), dtype=np.float32), np.zeros((2, 5), dtype=np.float32))


def test_gru_backend_mismatch_is_an_error(cupy_xp):
    gru = nn.GRU(3, 4, rng=0)
    with pytest.raises(backend.BackendMismatchError, match="parameters live on numpy"):
        gru(backend.to_backend(np.zeros((2, 1, 3), dtype=np.float32), "cupy"))


# ------------------------------------------------------------------ PyTorch reference
def _to_torch(torch, state):
    return {k: torch.from_numpy(backend.to_numpy(v).copy()) for k, v in state.items()}


TORCH_CASES = [dict(), dict(num_layers=2), dict(bidirectional=True), dict(num_layers=2, bidirectional=True),
               dict(batch_first=True, num_layers=2, bidirectional=True), dict(bias=False)]


@pytest.mark.parametrize("kw", TORCH_CASES, ids=str)
def test_gru_matches_torch(kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    ours = nn.GRU(3, 5, rng=0, dtype=np.float64, **kw)
    theirs = torch.nn.GRU(3, 5, **kw).double()
    theirs.load_state_dict(_to_torch(torch, ours.state_dict()))
    layers = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    x = rng.standard_normal((2, 4, 3) if kw.get("batch_first") else (4, 2, 3))
    h0 = rng.standard_normal((layers, 2, 5))
    x_t = torch.tensor(x, requires_grad=True)
    h0_t = torch.tensor(h0, requires_grad=True)
    out, h_n = ours(x, h0)
    out_t, h_n_t = theirs(x_t, h0_t)
    dout, dh_n = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    dx, dh0 = ours.backward(dout, dh_n)
    torch.autograd.backward([out_t, h_n_t], [torch.tensor(dout), torch.tensor(dh_n)])
    pairs = [(out, out_t), (h_n, h_n_t), (dx, x_t.grad), (dh0, h0_t.grad)]
    pairs += [(p.grad, dict(theirs.named_parameters())[name].grad) for name, p in ours.named_parameters()]
    for a, b in pairs:
        assert rel_error(a, b.detach().numpy()) <= TORCH_TOL


@pytest.mark.parametrize("batched", [True, False])
def test_grucell_matches_torch(batched):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    ours = nn.GRUCell(4, 3, rng=0, dtype=np.float64)
    theirs = torch.nn.GRUCell(4, 3).double()
    theirs.load_state_dict(_to_torch(torch, ours.state_dict()))
    x, h = rng.standard_normal((5, 4) if batched else (4,)), rng.standard_normal((5, 3) if batched else (3,))
    x_t, h_t = torch.tensor(x, requires_grad=True), torch.tensor(h, requires_grad=True)
    h_next, h_next_t = ours(x, h), theirs(x_t, h_t)
    dh_next = rng.standard_normal(h_next.shape)
    dx, dh = ours.backward(dh_next)
    h_next_t.backward(torch.tensor(dh_next))
    assert rel_error(h_next, h_next_t.detach().numpy()) <= TORCH_TOL
    assert rel_error(dx, x_t.grad.numpy()) <= TORCH_TOL and rel_error(dh, h_t.grad.numpy()) <= TORCH_TOL
    for name, p in ours.named_parameters():
        assert rel_error(p.grad, dict(theirs.named_parameters())[name].grad.numpy()) <= TORCH_TOL


def test_gru_state_dict_interchanges_with_torch_both_ways():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    ours = nn.GRU(3, 4, num_layers=2, bidirectional=True, rng=1)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})   # torch -> minigru
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x))[0].numpy()
    assert np.allclose(ours(x)[0], expected, atol=1e-6)
    back = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    back.load_state_dict(_to_torch(torch, nn.GRU(3, 4, num_layers=2, bidirectional=True, rng=5).state_dict()))
    ours.load_state_dict(nn.GRU(3, 4, num_layers=2, bidirectional=True, rng=5).state_dict())  # minigru -> torch
    with torch.no_grad():
        assert np.allclose(back(torch.from_numpy(x))[0].numpy(), ours(x)[0], atol=1e-6)


# ------------------------------------------------------------------ golden fixtures (no torch needed)
def _golden(case):
    with np.load(GOLDEN, allow_pickle=False) as data:
        prefix = case + "__"
        return {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}


@pytest.mark.parametrize("case", ["gru", "gru_batch_first"])
def test_gru_matches_golden(case):
    g = _golden(case)
    kw = dict(num_layers=2, bidirectional=True) if case == "gru" else dict(batch_first=True)
    ours = nn.GRU(g["x"].shape[-1], g["h_n"].shape[-1], dtype=np.float64, **kw)
    ours.load_state_dict({k[len("param__"):]: v for k, v in g.items() if k.startswith("param__")})
    out, h_n = ours(g["x"], g["h0"])
    dx, dh0 = ours.backward(g["dout"], g["dh_n"])
    for a, b in [(out, g["out"]), (h_n, g["h_n"]), (dx, g["dx"]), (dh0, g["dh0"])]:
        assert rel_error(a, b) <= TORCH_TOL
    for name, p in ours.named_parameters():
        assert rel_error(p.grad, g["grad__" + name]) <= TORCH_TOL


def test_grucell_matches_golden():
    g = _golden("grucell")
    cell = nn.GRUCell(g["x"].shape[-1], g["h"].shape[-1], dtype=np.float64)
    cell.load_state_dict({k[len("param__"):]: v for k, v in g.items() if k.startswith("param__")})
    assert rel_error(cell(g["x"], g["h"]), g["h_next"]) <= TORCH_TOL
    dx, dh = cell.backward(g["dh_next"])
    assert rel_error(dx, g["dx"]) <= TORCH_TOL and rel_error(dh, g["dh"]) <= TORCH_TOL
    for name, p in cell.named_parameters():
        assert rel_error(p.grad, g["grad__" + name]) <= TORCH_TOL
