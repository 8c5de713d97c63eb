"""ConvGRU: kernels and layers against finite differences, a loop-by-loop NumPy ConvGRU, PyTorch and golden files,
and the ConvGRUPredictor (gradient check, and it learns on moving shapes).

Gradient checks: float64, centred differences with step EPS = 1e-5, max relative error (docs/derivations.md
eq. G2) <= 1e-6. As for the GRU (tests/test_gru.py), a few random draws make one gradient entry cancel to
~1e-5 of its neighbours, which no float64 finite difference resolves to 1e-6 relative error; the seeds here are
fixed, and the torch comparisons (1e-8 relative, every entry) cover all entries.
"""
import contextlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from minigru import backend, nn
from minigru import functional as F
from minigru.gradcheck import check_module, numerical_gradient, rel_error
from minigru.models.convgru_predictor import ConvGRUPredictor, fit_next_frame, next_frame_pairs

GOLDEN = Path(__file__).parent / "golden" / "convgru_renet.npz"
TOL, EPS, TORCH_TOL = 1e-6, 1e-5, 1e-8


def _random(rng, xp, shape, scale=1.0):
    return xp.asarray(rng.standard_normal(shape) * scale)


# --------------------------------------------------------------------- an independent NumPy ConvGRU
def loop_conv(x, w, b, stride, pad):
    """Cross-correlation by explicit loops over output pixels (eq. C1), no im2col."""
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    Ho, Wo = (H + 2 * pad[0] - kh) // stride + 1, (W + 2 * pad[1] - kw) // stride + 1
    out = np.zeros((N, K, Ho, Wo))
    for a in range(Ho):
        for c in range(Wo):
            window = xpad[:, :, a * stride:a * stride + kh, c * stride:c * stride + kw]
            out[:, :, a, c] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3]))
    return out if b is None else out + b[None, :, None, None]


def loop_convgru(x, h0, w_ih, w_hh, b_ih, b_hh, stride, pad, reset_after):
    """Ballas et al.'s equations step by step (eqs. CG1-CG5), σ(a) = 1 / (1 + e^-a)."""
    C, k = w_hh.shape[1], w_hh.shape[2]
    same = (k // 2, k // 2)
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    b_ih = np.zeros(3 * C) if b_ih is None else b_ih
    b_hh = np.zeros(3 * C) if b_hh is None else b_hh
    h, out = h0, []
    for x_t in x:
        gx = loop_conv(x_t, w_ih, b_ih, stride, pad)
        if h is None:
            h = np.zeros((x.shape[1], C) + gx.shape[2:])
        r = sig(gx[:, :C] + loop_conv(h, w_hh[:C], b_hh[:C], 1, same))
        z = sig(gx[:, C:2 * C] + loop_conv(h, w_hh[C:2 * C], b_hh[C:2 * C], 1, same))
        if reset_after:
            n = np.tanh(gx[:, 2 * C:] + r * loop_conv(h, w_hh[2 * C:], b_hh[2 * C:], 1, same))
        else:
            n = np.tanh(gx[:, 2 * C:] + loop_conv(r * h, w_hh[2 * C:], b_hh[2 * C:], 1, same))
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out)


def _convgru_args(rng, xp, steps, batch, c_in, height, width, hidden, k_in, k, stride, padding, bias=True,
                  with_h0=True):
    x = _random(rng, xp, (steps, batch, c_in, height, width))
    w_ih = _random(rng, xp, (3 * hidden, c_in, k_in, k_in), 0.3)
    w_hh = _random(rng, xp, (3 * hidden, hidden, k, k), 0.3)
    b_ih = _random(rng, xp, (3 * hidden,), 0.3) if bias else None
    b_hh = _random(rng, xp, (3 * hidden,), 0.3) if bias else None
    Ho, Wo = F.convgru_state_size((height, width), w_ih, stride, padding)
    h0 = _random(rng, xp, (batch, hidden, Ho, Wo)) if with_h0 else None
    return [x, h0, w_ih, w_hh, b_ih, b_hh]


# (T, N, C_in, H, W, C, input kernel, recurrent kernel, input stride, input padding, bias, h0 given)
KERNEL_CASES = [
    (3, 2, 2, 5, 4, 3, 3, 3, 1, None, True, True),     # 'same' 3x3 everywhere, odd sizes
    (1, 1, 1, 3, 3, 2, 3, 3, 1, None, True, True),     # T = 1, batch 1
    (3, 2, 2, 6, 5, 2, 3, 3, 2, 1, True, False),       # stride-2 input conv, h0 = None
    (2, 1, 3, 7, 6, 2, 5, 3, 2, 2, False, True),       # 5x5 stride 2 padding 2, no bias
    (2, 2, 2, 4, 5, 3, 1, 1, 1, 0, True, True),        # 1x1 kernels, padding 0
    (2, 1, 1, 5, 5, 2, 3, 5, 1, 0, True, True),        # 'valid' input conv (3x3 states), 5x5 recurrent kernel
]


@pytest.mark.parametrize("case", KERNEL_CASES, ids=str)
@pytest.mark.parametrize("reset_after", [False, True])
def test_convgru_sequence_kernel_gradcheck(xp, case, reset_after):
    *sizes, bias, with_h0 = case
    rng = np.random.default_rng(5)
    args = _convgru_args(rng, xp, *sizes, bias=bias, with_h0=with_h0)
    stride, padding = sizes[8], sizes[9]
    hs, cache = F.convgru_forward(*args, stride=stride, padding=padding, reset_after=reset_after)
    dhs, dh_last = _random(rng, xp, hs.shape), _random(rng, xp, hs.shape[1:])
    grads = F.convgru_backward(dhs, dh_last, cache)

    def outputs(_):
        out, _cache = F.convgru_forward(*args, stride=stride, padding=padding, reset_after=reset_after)
        return out, out[-1]

    for name, array, grad in zip(["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"], args, grads):
        if array is None:
            assert name == "h0" or grad is None
            continue
        numeric = numerical_gradient(outputs, array, [dhs, dh_last], eps=EPS)
        assert rel_error(grad, numeric) <= TOL, name


@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_convgru_step_kernel_gradcheck(xp, reset_after, bias):
    rng = np.random.default_rng(1)
    x, h, w_ih, w_hh, b_ih, b_hh = _convgru_args(rng, xp, 1, 2, 2, 5, 6, 2, 3, 3, 2, 1, bias=bias)
    args = [x[0], h, w_ih, w_hh, b_ih, b_hh]
    run = lambda _: F.convgru_step_forward(*args, stride=2, padding=1, reset_after=reset_after)[0]  # noqa: E731
    h_next, cache = F.convgru_step_forward(*args, stride=2, padding=1, reset_after=reset_after)
    dh_next = _random(rng, xp, h_next.shape)
    for array, grad in zip(args, F.convgru_step_backward(dh_next, cache)):
        if array is None:
            assert grad is None
            continue
        assert rel_error(grad, numerical_gradient(run, array, dh_next, eps=EPS)) <= TOL


@pytest.mark.parametrize("reset_after", [False, True])
def test_convgru_step_and_sequence_kernels_agree(xp, reset_after):
    rng = np.random.default_rng(11)
    x, h0, *weights = _convgru_args(rng, xp, 4, 2, 2, 6, 5, 3, 3, 3, 2, 1)
    hs, cache = F.convgru_forward(x, h0, *weights, stride=2, padding=1, reset_after=reset_after)
    dhs = _random(rng, xp, hs.shape)
    seq_grads = F.convgru_backward(dhs, None, cache)
    h, caches = h0, []
    for t in range(4):
        h, step_cache = F.convgru_step_forward(x[t], h, *weights, stride=2, padding=1, reset_after=reset_after)
        caches.append(step_cache)
        assert rel_error(h, hs[t]) < 1e-12
    dh, sums = xp.zeros_like(h0), [0, 0, 0, 0]
    for t in reversed(range(4)):
        dx, dh, *dparams = F.convgru_step_backward(dhs[t] + dh, caches[t])
        assert rel_error(dx, seq_grads[0][t]) < 1e-10
        sums = [s + g for s, g in zip(sums, dparams)]
    assert rel_error(dh, seq_grads[1]) < 1e-10
    for s, g in zip(sums, seq_grads[2:]):
        assert rel_error(s, g) < 1e-10


@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("case", [(3, 2, 2, 5, 4, 3, 3, 3, 1, (1, 1)), (2, 1, 3, 6, 7, 2, 5, 3, 2, (2, 2)),
                                  (2, 2, 1, 4, 4, 2, 1, 5, 1, (0, 0))], ids=str)
def test_convgru_forward_matches_loop_reference(case, reset_after):
    rng = np.random.default_rng(5)
    args = _convgru_args(rng, np, *case)
    hs, _ = F.convgru_forward(*args, stride=case[8], padding=case[9], reset_after=reset_after)
    # states are O(1): an absolute bound (entries near 0 make elementwise relative errors meaningless here)
    assert np.max(np.abs(hs - loop_convgru(*args, case[8], case[9], reset_after))) < 1e-13
    other = loop_convgru(*args, case[8], case[9], not reset_after)
    assert np.max(np.abs(hs - other)) > 1e-4  # the two conventions really differ


def test_convgru_kernel_h0_none_is_zeros_and_float32_stays_float32():
    rng = np.random.default_rng(0)
    args = _convgru_args(rng, np, 3, 2, 2, 4, 4, 2, 3, 3, 1, None)
    hs_none, _ = F.convgru_forward(args[0], None, *args[2:])
    hs_zero, _ = F.convgru_forward(args[0], np.zeros_like(args[1]), *args[2:])
    assert np.array_equal(hs_none, hs_zero)
    args32 = [a.astype(np.float32) for a in args]
    hs, cache = F.convgru_forward(*args32)
    grads = F.convgru_backward(np.ones_like(hs), None, cache)
    assert hs.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    with pytest.raises(RuntimeError, match="already used"):
        F.convgru_backward(np.ones_like(hs), None, cache)


def test_convgru_kernel_rejects_bad_arguments():
    x, h0, w_ih, w_hh, b_ih, b_hh = _convgru_args(np.random.default_rng(0), np, 2, 2, 2, 4, 4, 2, 3, 3, 1, None)
    with pytest.raises(ValueError, match=r"x must have shape \(T, N, C_in, H, W\)"):
        F.convgru_forward(x[0], h0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="odd sizes"):
        F.convgru_forward(x, None, w_ih, np.zeros((6, 2, 2, 2)), b_ih, b_hh)
    with pytest.raises(ValueError, match="weight_ih must have shape"):
        F.convgru_forward(x, h0, w_ih[:, :1], w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="state must have shape"):
        F.convgru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, stride=2)
    with pytest.raises(ValueError, match="both bias_ih and bias_hh"):
        F.convgru_forward(x, h0, w_ih, w_hh, b_ih, None)
    with pytest.raises(TypeError, match="dtype"):
        F.convgru_forward(x.astype(np.float32), h0, w_ih, w_hh, b_ih, b_hh)


# --------------------------------------------------------------------- layers
LAYER_CASES = [
    dict(shape=(3, 2, 2, 5, 4), kw={}, h0=False),
    dict(shape=(1, 1, 2, 3, 3), kw={}, h0=True),                                           # T = 1, batch 1
    dict(shape=(3, 2, 2, 6, 5), kw=dict(num_layers=2, input_stride=2), h0=True),            # 2 layers, stride 2
    dict(shape=(2, 3, 2, 4, 4), kw=dict(batch_first=True, reset_after=True), h0=False),
    dict(shape=(2, 2, 2, 5, 5), kw=dict(num_layers=2, bias=False, input_kernel_size=5, input_padding=1), h0=True),
    dict(shape=(3, 2, 4, 4), kw=dict(num_layers=2), h0=True, seed=4),                       # unbatched (T, C, H, W)
]


@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: f"{c['shape']}-{c['kw']}-h0={c['h0']}")
def test_convgru_layer_gradcheck(backend_name, case):
    rng = np.random.default_rng(case.get("seed", 2))
    layer = nn.ConvGRU(2, 3, 3, rng=0, **case["kw"])
    x = backend.to_backend(rng.standard_normal(case["shape"]))
    inputs = [x]
    if case["h0"]:
        batched = len(case["shape"]) == 5
        batch = (case["shape"][0 if case["kw"].get("batch_first") else 1],) if batched else ()
        Ho, Wo = layer.state_size(case["shape"][-2:])
        inputs.append(backend.to_backend(rng.standard_normal((layer.num_layers, *batch, 3, Ho, Wo))))
    report = check_module(layer, *inputs, eps=EPS, tol=TOL, verbose=False)
    assert report.passed, str(report)


@pytest.mark.parametrize("kw", [{}, dict(reset_after=True), dict(bias=False, input_stride=2)], ids=str)
def test_convgrucell_gradcheck(backend_name, kw):
    rng = np.random.default_rng(6)
    cell = nn.ConvGRUCell(2, 3, 3, rng=1, **kw)
    x = backend.to_backend(rng.standard_normal((2, 2, 5, 4)))
    h = backend.to_backend(rng.standard_normal((2, 3, *cell.state_size((5, 4)))))
    assert check_module(cell, x, h, eps=EPS, verbose=False).passed
    assert check_module(cell, x, None, eps=EPS, verbose=False).passed


def test_convgru_layer_parameters_init_and_cell_agreement():
    layer = nn.ConvGRU(2, 4, 3, num_layers=2, input_kernel_size=5, input_stride=2, rng=0)
    shapes = {k: v.shape for k, v in layer.state_dict().items()}
    assert shapes == {"weight_ih_l0": (12, 2, 5, 5), "weight_hh_l0": (12, 4, 3, 3), "bias_ih_l0": (12,),
                      "bias_hh_l0": (12,), "weight_ih_l1": (12, 4, 3, 3), "weight_hh_l1": (12, 4, 3, 3),
                      "bias_ih_l1": (12,), "bias_hh_l1": (12,)}
    bound = 1 / np.sqrt(4 * 3 * 3)
    assert all(p.dtype == np.float32 and np.abs(p.data).max() <= bound for p in layer.parameters())
    same = nn.ConvGRU(2, 4, 3, num_layers=2, input_kernel_size=5, input_stride=2, rng=0)
    assert all(np.array_equal(a, b) for a, b in zip(layer.state_dict().values(), same.state_dict().values()))
    # a single-layer ConvGRU is the cell applied step by step
    seq = nn.ConvGRU(2, 3, 3, input_stride=2, rng=1, dtype=np.float64)
    cell = nn.ConvGRUCell(2, 3, 3, input_stride=2, dtype=np.float64)
    cell.load_state_dict({k[:-3]: v for k, v in seq.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3, 2, 2, 6, 6))
    out, h_n = seq(x)
    h = None
    for t in range(3):
        h = cell(x[t], h)
        assert rel_error(h, out[t]) < 1e-12
    assert rel_error(h_n[0], h) < 1e-12


def test_convgru_backward_accumulates_no_grad_and_none_gradients():
    layer = nn.ConvGRU(2, 3, 3, rng=0).double()
    x = np.random.default_rng(0).standard_normal((3, 2, 2, 4, 4))
    out, _ = layer(x)
    layer.backward(np.ones_like(out))
    first = layer.weight_hh_l0.grad.copy()
    layer(x)
    layer.backward(np.ones_like(out), None)
    assert np.allclose(layer.weight_hh_l0.grad, 2 * first)
    layer.zero_grad()
    layer(x)
    dx, dh0 = layer.backward(None, None)
    assert np.all(dx == 0) and np.all(dh0 == 0) and np.all(layer.weight_ih_l0.grad == 0)
    with nn.no_grad():
        layer(x)
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones_like(out))


def test_convgru_layer_rejects_bad_inputs():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        nn.ConvGRU(2, 3, 4)
    with pytest.raises(ValueError, match="hidden_channels"):
        nn.ConvGRU(2, 0, 3)
    layer = nn.ConvGRU(2, 3, 3, rng=0)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 2, H, W\)"):
        layer(np.zeros((3, 2, 4, 4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="3-D shape"):
        layer(np.zeros((3, 2, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="float32 parameters but got a float64"):
        layer(np.zeros((3, 2, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"expected h0 of shape \(1, 2, 3, 4, 4\)"):
        layer(np.zeros((3, 2, 2, 4, 4), dtype=np.float32), np.zeros((1, 2, 3, 2, 2), dtype=np.float32))
    layer(np.zeros((3, 2, 2, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="ConvGRU.backward: dout must have shape"):
        layer.backward(np.zeros((3, 2, 3, 2, 2), dtype=np.float32))


# --------------------------------------------------------------------- PyTorch reference and golden file
def _reference_module():
    pytest.importorskip("torch")
    path = Path(__file__).parent / "golden" / "make_convgru_renet.py"
    spec = importlib.util.spec_from_file_location("make_convgru_renet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TORCH_CASES = [dict(), dict(reset_after=True), dict(num_layers=2, input_stride=2, input_kernel_size=5),
               dict(bias=False, input_padding=0), dict(num_layers=2, reset_after=True, bias=False)]


@pytest.mark.parametrize("kw", TORCH_CASES, ids=str)
def test_convgru_matches_torch_reference(kw):
    ref = _reference_module()
    torch = ref.torch
    rng = np.random.default_rng(8)
    ours = nn.ConvGRU(2, 3, 3, rng=0, dtype=np.float64, **kw)
    x = rng.standard_normal((3, 2, 2, 7, 6))
    h0 = rng.standard_normal((ours.num_layers, 2, 3, *ours.state_size((7, 6))))
    params = {k: torch.tensor(v, requires_grad=True) for k, v in ours.state_dict().items()}
    x_t, h0_t = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    out_t, h_n_t = ref.torch_convgru(x_t, h0_t, params, ours.num_layers, ours.input_stride, ours.input_padding,
                                     ours.reset_after)
    out, h_n = ours(x, h0)
    dout, dh_n = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    dx, dh0 = ours.backward(dout, dh_n)
    torch.autograd.backward([out_t, h_n_t], [torch.tensor(dout), torch.tensor(dh_n)])
    pairs = [(out, out_t), (h_n, h_n_t), (dx, x_t.grad), (dh0, h0_t.grad)]
    pairs += [(p.grad, params[name].grad) for name, p in ours.named_parameters()]
    for a, b in pairs:
        assert rel_error(a, b.detach().numpy()) <= TORCH_TOL


GOLDEN_LAYERS = {"convgru": dict(num_layers=2), "convgru_stride2": dict(input_kernel_size=5, input_stride=2,
                                                                        input_padding=2),
                 "convgru_reset_after": dict(input_kernel_size=1, input_padding=0, reset_after=True)}


@pytest.mark.parametrize("case", sorted(GOLDEN_LAYERS))
def test_convgru_matches_golden(case):
    with np.load(GOLDEN, allow_pickle=False) as data:
        g = {k[len(case) + 2:]: data[k] for k in data.files if k.startswith(case + "__")}
    kernel = g["param__weight_hh_l0"].shape[-1]
    layer = nn.ConvGRU(g["x"].shape[2], g["h0"].shape[2], kernel, dtype=np.float64, **GOLDEN_LAYERS[case])
    layer.load_state_dict({k[len("param__"):]: v for k, v in g.items() if k.startswith("param__")})
    out, h_n = layer(g["x"], g["h0"])
    dx, dh0 = layer.backward(g["dout"], g["dh_n"])
    for a, b in [(out, g["out"]), (h_n, g["h_n"]), (dx, g["dx"]), (dh0, g["dh0"])]:
        assert rel_error(a, b) <= TORCH_TOL
    for name, p in layer.named_parameters():
        assert rel_error(p.grad, g["grad__" + name]) <= TORCH_TOL


# --------------------------------------------------------------------- ConvGRUPredictor
@pytest.mark.parametrize("kw", [dict(logits=True), dict(encoder_channels=0, reset_after=True, num_layers=2)], ids=str)
def test_convgru_predictor_gradcheck(kw):
    model = ConvGRUPredictor(1, 2, 3, encoder_channels=kw.pop("encoder_channels", 2), rng=1, **kw)
    for p in model.parameters():
        # the default init gives this tiny model gradient entries of ~1e-7 next to ~1e-1, below what a
        # float64 finite difference resolves to 1e-6 relative error; larger weights give larger gradients
        p.data *= 3
    video = np.random.default_rng(1).uniform(size=(2, 3, 1, 4, 5))
    report = check_module(model, video, eps=EPS, tol=TOL, verbose=False)
    assert report.passed, str(report)


def test_convgru_predictor_is_causal():
    model = ConvGRUPredictor(1, 4, 3, encoder_channels=3, rng=0, dtype=np.float64)
    video = np.random.default_rng(1).uniform(size=(1, 5, 1, 6, 6))
    changed = video.copy()
    changed[:, 3] += 1.0
    a, b = model.predict(video), model.predict(changed)
    assert np.array_equal(a[:, :3], b[:, :3])          # predictions from frames <= 2 ignore frame 3
    assert not np.allclose(a[:, 3:], b[:, 3:])
    inputs, targets = next_frame_pairs(video)
    assert np.array_equal(inputs[0, 1:], targets[0, :-1])


def _one_blas_thread():
    """Small GEMMs run faster on one BLAS thread, and much faster on a busy machine (OpenBLAS's idle
    threads spin: this test took 20 s instead of 0.6 s with two threads on two loaded cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def test_convgru_predictor_learns_moving_shapes():
    from minigru.data import make_moving_shapes
    videos = make_moving_shapes(48, n_frames=6, image_size=12, seed=0)
    model = ConvGRUPredictor(1, 8, 3, encoder_channels=8, logits=True, rng=0)
    with _one_blas_thread():
        history = fit_next_frame(model, videos, epochs=8, batch_size=8, lr=3e-2, seed=0)
    # the loss a model reaches by predicting every pixel's mean brightness (a constant image): the entropy of
    # a Bernoulli with the mean intensity (pixels are nearly binary)
    mean = float(videos[:, 1:].mean())
    constant = -(mean * np.log(mean) + (1 - mean) * np.log(1 - mean))
    assert history["batch_loss"][0] > 0.6                       # starts near log 2 (logits near 0)
    assert history["epoch_loss"][-1] < 0.8 * constant            # ends well below a constant prediction
    assert history["epoch_loss"][-1] < 0.6 * history["epoch_loss"][0]
    with pytest.raises(ValueError, match="logits=True"):
        fit_next_frame(ConvGRUPredictor(rng=0), videos)
