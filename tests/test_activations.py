"""ReLU, Tanh, Sigmoid and Softmax: gradient checks, torch reference, golden fixture, stability, properties."""
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minigru import backend, nn
from minigru import functional as F
from minigru.gradcheck import check_module, numerical_gradient, rel_error

GOLDEN = Path(__file__).parent / "golden" / "basic.npz"
TOL = 1e-6
REF_TOL = 1e-8

LAYERS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softmax": lambda: nn.Softmax(dim=1)}
KERNELS = {"relu": (F.relu_forward, F.relu_backward), "tanh": (F.tanh_forward, F.tanh_backward),
           "sigmoid": (F.sigmoid_forward, F.sigmoid_backward),
           "softmax": (lambda x: F.softmax_forward(x, axis=1), F.softmax_backward)}


def away_from_kink(a):
    """Move values within 1e-3 of 0 away from it, so ReLU's finite differences never straddle the kink."""
    return np.where(np.abs(a) < 1e-3, 0.5, a)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("shape", [(1, 3), (4, 5), (2, 3, 3), (3, 1, 2, 2)])
def test_activation_layer_gradcheck(xp, name, shape):
    x = xp.asarray(away_from_kink(np.random.default_rng(0).standard_normal(shape) * 2))
    report = check_module(LAYERS[name](), x, verbose=False)
    assert report.passed, str(report)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_activation_kernels_match_finite_differences(xp, name):
    fwd, bwd = KERNELS[name]
    rng = np.random.default_rng(1)
    x = xp.asarray(away_from_kink(rng.standard_normal((3, 7))))
    dout = xp.asarray(rng.standard_normal((3, 7)))
    _, cache = fwd(x)
    numeric = numerical_gradient(lambda _: fwd(x)[0], x, dout)
    assert rel_error(bwd(dout, cache), numeric) < TOL


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_activation_matches_torch(xp, name):
    torch = pytest.importorskip("torch")
    fn = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
          "softmax": lambda a: torch.softmax(a, dim=1)}[name]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6)) * 3
    x[0, :2] = 0.0                                  # ReLU's gradient at exactly 0 is 0, as torch's
    dout = rng.standard_normal((4, 6))
    xt = torch.tensor(x, requires_grad=True)
    yt = fn(xt)
    yt.backward(torch.tensor(dout))
    layer = LAYERS[name]()
    out = layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(dout))
    assert rel_error(out, yt.detach().numpy()) < REF_TOL
    assert rel_error(dx, xt.grad.numpy()) < REF_TOL


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_activation_golden(xp, name):
    g = np.load(GOLDEN, allow_pickle=False)
    layer = LAYERS[name]()
    out = layer(xp.asarray(g[f"{name}.x"]))
    dx = layer.backward(xp.asarray(g[f"{name}.dout"]))
    assert rel_error(out, g[f"{name}.out"]) < REF_TOL
    assert rel_error(dx, g[f"{name}.dx"]) < REF_TOL


def test_log_softmax_golden(xp):
    g = np.load(GOLDEN, allow_pickle=False)
    assert rel_error(F.log_softmax(xp.asarray(g["log_softmax.x"]), axis=1), g["log_softmax.out"]) < REF_TOL


def test_relu_hand_values(xp):
    x = xp.asarray([[-2.0, 0.0, 3.0]])
    out, cache = F.relu_forward(x)
    np.testing.assert_array_equal(backend.to_numpy(out), [[0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(backend.to_numpy(F.relu_backward(xp.asarray([[5.0, 5.0, 5.0]]), cache)),
                                  [[0.0, 0.0, 5.0]])
    assert F.relu_backward(xp.ones((1, 3), dtype=np.float32), F.relu_forward(x.astype(np.float32))[1]).dtype \
        == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_at_extremes(xp, dtype):
    x = xp.asarray([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0], dtype=dtype)
    layer = nn.Sigmoid()
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # overflow in exp would warn
        out = layer(x)
        dx = layer.backward(xp.ones_like(x))
    out, dx = backend.to_numpy(out), backend.to_numpy(dx)
    assert out.dtype == dtype and np.all(np.isfinite(out)) and np.all(np.isfinite(dx))
    assert out[0] == 0.0 and out[-1] == 1.0 and out[3] == 0.5
    assert dx[0] == 0.0 and dx[-1] == 0.0 and dx[3] == 0.25
    # ½(1 + tanh(x/2)) is accurate in absolute terms (what gates need); far in the negative tail it
    # rounds to 0 where 1/(1 + e^{-x}) would still be a tiny positive number.
    grid = np.linspace(-40, 40, 161)
    expected = 1.0 / (1.0 + np.exp(-grid))
    got = backend.to_numpy(F.sigmoid(xp.asarray(grid, dtype=dtype)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=2 * np.finfo(dtype).eps)


def test_tanh_and_softmax_extremes_do_not_warn(xp):
    x = xp.asarray([[-1000.0, 0.0, 1000.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = backend.to_numpy(nn.Tanh()(x))
        s = backend.to_numpy(nn.Softmax()(x))
        ls = backend.to_numpy(F.log_softmax(x))
    np.testing.assert_array_equal(t, [[-1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(s, [[0.0, 0.0, 1.0]])
    assert ls[0, 2] == 0.0 and ls[0, 1] == -1000.0 and np.isfinite(ls).all()


finite_rows = arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 6)),
                     elements=st.floats(-50, 50, allow_nan=False, allow_infinity=False))


@settings(max_examples=60, deadline=None)
@given(x=finite_rows, shift=st.floats(-1e3, 1e3, allow_nan=False))
def test_softmax_rows_sum_to_one_and_ignore_a_row_constant(x, shift):
    p = F.softmax(x, axis=1)
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    shifts = shift * np.arange(1, x.shape[0] + 1)[:, None]    # a different constant per row
    np.testing.assert_allclose(F.softmax(x + shifts, axis=1), p, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(np.exp(F.log_softmax(x, axis=1)), p, rtol=1e-9, atol=1e-300)


def test_softmax_bad_dim():
    with pytest.raises(ValueError, match="Softmax"):
        nn.Softmax(dim=2)(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="floating-point input"):
        nn.ReLU()(np.zeros((2, 3), dtype=np.int32))
    with pytest.raises(RuntimeError, match="needs a forward"):
        nn.Tanh().backward(np.zeros(3))


# ------------------------------------------------------------------------------------------------ GELU
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (4, 5), (2, 3, 3), (3, 1, 2, 2)])
def test_gelu_gradcheck(xp, approximate, shape):
    """Eqs. A4' and A5' against centred finite differences, on every backend, empty batches included."""
    x = xp.asarray(np.random.default_rng(0).standard_normal(shape) * 2)
    report = check_module(nn.GELU(approximate), x, verbose=False)
    assert report.passed, str(report)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(x=arrays(np.float64, st.integers(1, 12), elements=st.floats(-12, 12)), approximate=st.sampled_from(["none", "tanh"]))
def test_gelu_matches_torch_everywhere(x, approximate):
    """Values and gradients equal torch.nn.functional.gelu's in both forms, far into both tails."""
    torch = pytest.importorskip("torch")
    dout = np.linspace(-1.0, 2.0, x.size)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.gelu(xt, approximate=approximate)
    yt.backward(torch.tensor(dout))
    layer = nn.GELU(approximate)
    np.testing.assert_allclose(layer(x), yt.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(layer.backward(dout), xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_gelu_values_by_hand(xp):
    """GELU(0) = 0, GELU(x) → x for large x and → 0 for very negative x; Φ(1) from the normal table; the tanh form
    stays within 4.7e-4 of the exact one; float32 in, float32 out."""
    x = xp.asarray([0.0, 1.0, 8.0, -8.0])
    exact, _ = F.gelu_forward(x)
    np.testing.assert_allclose(backend.to_numpy(exact), [0.0, 0.8413447460685429, 8.0, 0.0], atol=1e-14)
    grid = xp.asarray(np.linspace(-6, 6, 1201))
    gap = backend.to_numpy(F.gelu_forward(grid, "tanh")[0] - F.gelu_forward(grid)[0])
    assert np.abs(gap).max() < 4.8e-4
    out, cache = F.gelu_forward(xp.asarray([[0.5, -0.5]], dtype=np.float32), "tanh")
    assert out.dtype == np.float32 and F.gelu_backward(xp.ones((1, 2), dtype=np.float32), cache).dtype == np.float32


def test_gelu_errors():
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        nn.GELU("erf")
    layer = nn.GELU()
    layer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="gelu_backward"):
        layer.backward(np.zeros((3, 2)))
