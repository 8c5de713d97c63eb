"""Linear, Identity and Flatten: gradient checks, torch reference, golden fixture, state dicts, errors."""
from pathlib import Path

import numpy as np
import pytest

from minigru import backend, nn
from minigru import functional as F
from minigru.gradcheck import check_module, numerical_gradient, rel_error

GOLDEN = Path(__file__).parent / "golden" / "basic.npz"
TOL = 1e-6        # finite differences (docs/architecture.md)
REF_TOL = 1e-8    # torch / golden, float64


@pytest.mark.parametrize("lead, in_f, out_f, bias", [
    ((1,), 4, 3, True),          # batch of one
    ((7,), 5, 1, True),          # odd sizes, one output
    ((2, 3), 4, 5, True),        # 3-D input (T, N, I)
    ((2, 1, 3), 3, 2, False),    # 4-D input, no bias
    ((), 6, 2, True),            # a single vector (I,)
])
def test_linear_gradcheck(xp, lead, in_f, out_f, bias):
    layer = nn.Linear(in_f, out_f, bias=bias, rng=0)
    x = xp.asarray(np.random.default_rng(1).standard_normal((*lead, in_f)))
    report = check_module(layer, x, verbose=False)
    assert report.passed, str(report)
    assert [r.name for r in report] == ["input[0]", "weight"] + (["bias"] if bias else [])


def test_linear_kernels_match_finite_differences(xp):
    rng = np.random.default_rng(2)
    x, w, b = (xp.asarray(rng.standard_normal(s)) for s in ((3, 2, 4), (5, 4), (5,)))
    dout = xp.asarray(rng.standard_normal((3, 2, 5)))
    out, cache = F.linear_forward(x, w, b)
    assert out.shape == (3, 2, 5)
    dx, dw, db = F.linear_backward(dout, cache)
    for analytic, arr in ((dx, x), (dw, w), (db, b)):
        numeric = numerical_gradient(lambda _: F.linear_forward(x, w, b)[0], arr, dout)
        assert rel_error(analytic, numeric) < TOL


def test_linear_forward_is_the_affine_map(xp):
    # hand-worked: x = [1, 2], W = [[1, 0], [2, -1], [0.5, 0.5]], b = [0, 1, -1]
    layer = nn.Linear(2, 3, dtype=np.float64)
    layer.weight.data[...] = xp.asarray([[1.0, 0.0], [2.0, -1.0], [0.5, 0.5]])
    layer.bias.data[...] = xp.asarray([0.0, 1.0, -1.0])
    out = layer(xp.asarray([[1.0, 2.0]]))
    np.testing.assert_allclose(backend.to_numpy(out), [[1.0, 1.0, 0.5]])


def test_linear_backward_accumulates_gradients(xp):
    layer = nn.Linear(3, 2, rng=0, dtype=np.float64)
    x = xp.asarray(np.random.default_rng(3).standard_normal((4, 3)))
    dout = xp.ones((4, 2))
    layer(x)
    layer.backward(dout)
    first = backend.to_numpy(layer.weight.grad).copy()
    layer(x)
    layer.backward(dout)
    np.testing.assert_allclose(backend.to_numpy(layer.weight.grad), 2 * first)
    np.testing.assert_allclose(backend.to_numpy(layer.bias.grad), [8.0, 8.0])


def test_linear_matches_torch(xp):
    torch = pytest.importorskip("torch")
    tl = torch.nn.Linear(4, 5).double()
    layer = nn.Linear(4, 5, dtype=np.float64)
    layer.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    rng = np.random.default_rng(4)
    x, dout = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 5))
    xt = torch.tensor(x, requires_grad=True)
    yt = tl(xt)
    yt.backward(torch.tensor(dout))
    out = layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(dout))
    assert rel_error(out, yt.detach().numpy()) < REF_TOL
    assert rel_error(dx, xt.grad.numpy()) < REF_TOL
    assert rel_error(layer.weight.grad, tl.weight.grad.numpy()) < REF_TOL
    assert rel_error(layer.bias.grad, tl.bias.grad.numpy()) < REF_TOL


def test_linear_golden(xp):
    g = np.load(GOLDEN, allow_pickle=False)
    layer = nn.Linear(4, 5, dtype=np.float64)
    layer.weight.data[...] = xp.asarray(g["linear.weight"])
    layer.bias.data[...] = xp.asarray(g["linear.bias"])
    out = layer(xp.asarray(g["linear.x"]))
    dx = layer.backward(xp.asarray(g["linear.dout"]))
    assert rel_error(out, g["linear.out"]) < REF_TOL
    assert rel_error(dx, g["linear.dx"]) < REF_TOL
    assert rel_error(layer.weight.grad, g["linear.dweight"]) < REF_TOL
    assert rel_error(layer.bias.grad, g["linear.dbias"]) < REF_TOL


def test_linear_state_dict_interchange_with_torch(backend_name):
    torch = pytest.importorskip("torch")
    tl = torch.nn.Linear(6, 3)
    layer = nn.Linear(6, 3, rng=5)
    layer.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    x = np.random.default_rng(6).standard_normal((2, 6)).astype(np.float32)
    with torch.no_grad():
        expected = tl(torch.tensor(x)).numpy()
    np.testing.assert_allclose(backend.to_numpy(layer(backend.to_backend(x))), expected, rtol=1e-5, atol=1e-6)
    back = torch.nn.Linear(6, 3)
    back.load_state_dict({k: torch.from_numpy(backend.to_numpy(v)) for k, v in layer.state_dict().items()})
    assert list(layer.state_dict()) == list(tl.state_dict()) == ["weight", "bias"]
    np.testing.assert_array_equal(back.weight.detach().numpy(), tl.weight.detach().numpy())


def test_linear_init_like_torch(backend_name):
    layer = nn.Linear(100, 30, rng=7)
    w, b = backend.to_numpy(layer.weight.data), backend.to_numpy(layer.bias.data)
    assert w.shape == (30, 100) and b.shape == (30,) and w.dtype == np.float32
    assert np.abs(w).max() <= 0.1 and np.abs(b).max() <= 0.1
    assert np.abs(w).max() > 0.09                   # U(-1/sqrt(100), 1/sqrt(100)) fills its range
    assert backend.backend_of(layer.weight.data) == backend_name
    again = nn.Linear(100, 30, rng=7)
    np.testing.assert_array_equal(backend.to_numpy(again.weight.data), w)
    assert nn.Linear(3, 2, bias=False).bias is None
    assert nn.Linear(3, 2, dtype=np.float64).weight.dtype == np.float64


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 5), np.float32), r"expected input of shape \(\*, 4\), got \(2, 5\)"),
    (np.zeros((2, 4), dtype=np.int64), "floating-point input"),
    (np.zeros((2, 4), dtype=np.float64), "float32 parameters but got a float64 input"),
])
def test_linear_bad_input(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        nn.Linear(4, 3, rng=0)(bad)


def test_linear_errors_without_forward_and_for_non_arrays():
    layer = nn.Linear(2, 2, rng=0)
    with pytest.raises(RuntimeError, match="needs a forward"):
        layer.backward(np.zeros((1, 2), np.float32))
    with pytest.raises(TypeError, match="expected a NumPy or CuPy array"):
        layer([[1.0, 2.0]])
    with pytest.raises(ValueError, match="non-negative"):
        nn.Linear(-1, 2)


def test_linear_kernel_shape_errors():
    x, w = np.zeros((2, 3)), np.zeros((4, 3))
    with pytest.raises(ValueError, match="bias must have shape"):
        F.linear_forward(x, w, np.zeros(3))
    with pytest.raises(ValueError, match="x must have shape"):
        F.linear_forward(np.zeros((2, 5)), w)
    _, cache = F.linear_forward(x, w, None)
    with pytest.raises(ValueError, match="dout must have shape"):
        F.linear_backward(np.zeros((2, 3)), cache)


def test_identity_passes_through(xp):
    layer = nn.Identity(54, unused="argument")
    x = xp.ones((2, 3))
    assert layer(x) is x and layer.backward(x) is x
    assert layer.state_dict() == {}


@pytest.mark.parametrize("start, end, shape, expected", [
    (1, -1, (2, 3, 4, 5), (2, 60)),
    (0, -1, (2, 3, 4), (24,)),
    (1, 2, (2, 3, 4, 5), (2, 12, 5)),
    (-2, -1, (2, 3, 4), (2, 12)),
    (1, 1, (2, 3), (2, 3)),
])
def test_flatten_shapes_match_torch(xp, start, end, shape, expected):
    layer = nn.Flatten(start, end)
    x = xp.asarray(np.arange(np.prod(shape), dtype=np.float64).reshape(shape))
    out = layer(x)
    assert out.shape == expected
    np.testing.assert_array_equal(backend.to_numpy(out).ravel(), np.arange(np.prod(shape)))   # row-major
    dx = layer.backward(out * 2)
    assert dx.shape == shape
    np.testing.assert_array_equal(backend.to_numpy(dx), 2 * backend.to_numpy(x))
    torch = pytest.importorskip("torch")
    assert tuple(torch.nn.Flatten(start, end)(torch.zeros(shape)).shape) == expected


def test_flatten_gradcheck(xp):
    x = xp.asarray(np.random.default_rng(8).standard_normal((3, 2, 1, 2)))
    assert check_module(nn.Flatten(), x, verbose=False).passed


def test_flatten_bad_dims():
    with pytest.raises(ValueError, match="start_dim=1 is out of range for a 1-D input"):
        nn.Flatten()(np.zeros(3))
    with pytest.raises(ValueError, match="comes after end_dim"):
        nn.Flatten(2, 1)(np.zeros((2, 3, 4)))
