"""MaxPool2d, AvgPool2d, AdaptiveAvgPool2d: finite differences, torch (float64), golden torch numbers,
torch's tie rule, -inf padding and bad input."""
import json
from pathlib import Path

import numpy as np
import pytest

import minigru.functional as F
from minigru import backend, nn
from minigru.gradcheck import check_module, numerical_gradient, rel_error

GOLDEN = Path(__file__).parent / "golden" / "conv.npz"

# (x shape, kernel_size, stride, padding): batch 1, C=1, overlapping windows, padding, non-square, odd.
POOL_CASES = [
    ((2, 2, 4, 4), 2, None, 0),
    ((1, 1, 5, 5), 3, 2, 1),
    ((2, 3, 5, 7), (2, 3), (1, 2), (1, 1)),
    ((1, 2, 6, 6), 3, 1, 0),
    ((2, 1, 7, 5), 2, 2, 1),
]
POOL_IDS = ["k2", "k3s2p1-b1-c1", "nonsquare", "overlap-k3s1", "odd-k2s2p1"]


def distinct_values(xp, shape, seed=0):
    """Inputs without near-ties, so that a finite-difference step never changes a window's maximum."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    return xp.asarray((rng.permutation(size) * 0.1 - size * 0.05 + rng.uniform(0, 0.01, size)).reshape(shape))


def _kernel_gradcheck(xp, forward, backward, x, *args):
    out, cache = forward(x, *args)
    dout = xp.asarray(np.random.default_rng(1).standard_normal(out.shape))
    dx = backward(dout, cache)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    return rel_error(dx, numerical_gradient(lambda _: forward(x, *args)[0], x, dout))


# ---------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES, ids=POOL_IDS)
def test_maxpool_kernel_gradcheck(xp, x_shape, kernel, stride, padding):
    x = distinct_values(xp, x_shape)
    err = _kernel_gradcheck(xp, F.maxpool2d_forward, F.maxpool2d_backward, x, kernel, stride, padding)
    assert err <= 1e-6


@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES, ids=POOL_IDS)
def test_avgpool_kernel_gradcheck(xp, x_shape, kernel, stride, padding):
    x = xp.asarray(np.random.default_rng(2).standard_normal(x_shape))
    err = _kernel_gradcheck(xp, F.avgpool2d_forward, F.avgpool2d_backward, x, kernel, stride, padding)
    assert err <= 1e-6


@pytest.mark.parametrize("x_shape, output_size", [((2, 3, 4, 5), 1), ((1, 2, 4, 6), (2, 3)),
                                                  ((2, 1, 6, 4), (3, None)), ((1, 1, 3, 3), (3, 3))])
def test_adaptive_avgpool_kernel_gradcheck(xp, x_shape, output_size):
    x = xp.asarray(np.random.default_rng(3).standard_normal(x_shape))
    err = _kernel_gradcheck(xp, F.adaptive_avgpool2d_forward, F.adaptive_avgpool2d_backward, x, output_size)
    assert err <= 1e-6


@pytest.mark.parametrize("layer", [nn.MaxPool2d(3, 2, 1), nn.MaxPool2d((2, 3), (1, 2)), nn.AvgPool2d(3, 2, 1),
                                   nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool2d((2, 1))],
                         ids=["max-k3s2p1", "max-nonsquare", "avg-k3s2p1", "avg-k2", "adaptive-1", "adaptive-2x1"])
def test_pool_layer_gradcheck(backend_name, layer):
    x = distinct_values(backend.get_xp(backend_name), (2, 2, 4, 6), seed=4)
    report = check_module(layer, x, verbose=False)
    assert report.passed, str(report)


# ------------------------------------------------------ hand-worked values
def test_maxpool_ties_go_to_the_first_maximum(xp):
    # Constant input: every window is a tie; torch routes each window's gradient to its
    # first element in row-major order, so with kernel 2 stride 2 only the (even, even) pixels get one.
    out, cache = F.maxpool2d_forward(xp.ones((1, 1, 4, 4)), 2)
    dx = backend.to_numpy(F.maxpool2d_backward(xp.ones((1, 1, 2, 2)), cache))
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 1
    np.testing.assert_array_equal(dx[0, 0], expected)
    # Overlapping windows (kernel 3, stride 1): window (a, b) starts at pixel (a, b) and sends its gradient there.
    out, cache = F.maxpool2d_forward(xp.full((1, 1, 4, 4), 2.0), 3, 1)
    dx = backend.to_numpy(F.maxpool2d_backward(xp.ones((1, 1, 2, 2)), cache))
    expected = np.zeros((4, 4))
    expected[:2, :2] = 1
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_maxpool_padding_is_minus_infinity(xp):
    # All inputs negative: zero padding would win the border windows; -inf padding (torch's) never does.
    x = -1 - xp.asarray(np.arange(16.0).reshape(1, 1, 4, 4))
    out, cache = F.maxpool2d_forward(x, 3, 2, 1)
    # x[r, c] = -1 - (4r + c): each window's maximum is its top-left real pixel
    np.testing.assert_array_equal(backend.to_numpy(out)[0, 0], [[-1, -2], [-5, -6]])
    dx = backend.to_numpy(F.maxpool2d_backward(xp.ones_like(out), cache))
    expected = np.zeros((4, 4))
    expected[:2, :2] = 1
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_avgpool_counts_padding_in_the_divisor(xp):
    out, _ = F.avgpool2d_forward(xp.ones((1, 1, 2, 2)), 2, 2, 1)
    np.testing.assert_array_equal(backend.to_numpy(out)[0, 0], np.full((2, 2), 0.25))


def test_adaptive_avgpool_1_is_the_global_mean(xp):
    x = xp.asarray(np.random.default_rng(5).standard_normal((2, 3, 5, 7)))
    out, cache = F.adaptive_avgpool2d_forward(x, 1)
    assert out.shape == (2, 3, 1, 1)
    assert rel_error(out, x.mean(axis=(2, 3), keepdims=True)) <= 1e-14
    dx = F.adaptive_avgpool2d_backward(xp.ones((2, 3, 1, 1)), cache)
    assert rel_error(dx, xp.full(x.shape, 1 / 35)) <= 1e-14


# ---------------------------------------------------------------- bad input
def test_pooling_rejects_bad_input(xp):
    with pytest.raises(ValueError, match="padding should be between 0 and half of the kernel size"):
        nn.MaxPool2d(3, 1, 2)
    with pytest.raises(ValueError, match="padding should be at most half of the kernel size"):
        F.maxpool2d_forward(xp.zeros((1, 1, 5, 5)), 2, 1, 2)
    with pytest.raises(ValueError, match="padding should be at most half"):
        F.avgpool2d_forward(xp.zeros((1, 1, 5, 5)), 3, 1, 2)
    with pytest.raises(ValueError, match="padding must be an int or a pair"):
        F.maxpool2d_forward(xp.zeros((1, 1, 5, 5)), 3, 1, "same")
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, H, W\), got \(3, 4, 4\): add a batch"):
        nn.MaxPool2d(2)(xp.zeros((3, 4, 4)))
    with pytest.raises(TypeError, match="floating-point"):
        nn.AvgPool2d(2)(xp.zeros((1, 1, 4, 4), dtype=np.int64))
    with pytest.raises(TypeError, match="floating-point"):
        F.maxpool2d_forward(xp.zeros((1, 1, 4, 4), dtype=np.int32), 2)
    with pytest.raises(ValueError, match=r"1x1 pixels .* smaller than the 2x2 kernel"):
        nn.MaxPool2d(2)(xp.zeros((1, 1, 1, 1)))
    assert nn.AdaptiveAvgPool2d(3)(xp.zeros((1, 1, 7, 7))).shape == (1, 1, 3, 3)  # torch's uneven windows
    with pytest.raises(ValueError, match="output_size must be positive"):
        F.adaptive_avgpool2d_forward(xp.zeros((1, 1, 4, 4)), 0)
    out, cache = F.maxpool2d_forward(xp.zeros((1, 1, 4, 4)), 2)
    with pytest.raises(ValueError, match="dout must have shape"):
        F.maxpool2d_backward(xp.zeros((1, 1, 4, 4)), cache)
    with pytest.raises(RuntimeError, match="needs a forward"):
        nn.AvgPool2d(2).backward(xp.zeros((1, 1, 2, 2)))


def test_pool_layer_attributes_match_torch():
    pool = nn.MaxPool2d(3, padding=1)
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 3, 1)
    assert repr(pool) == "MaxPool2d(kernel_size=3, stride=3, padding=1)"
    assert repr(nn.AdaptiveAvgPool2d((2, 2))) == "AdaptiveAvgPool2d(output_size=(2, 2))"
    assert list(nn.MaxPool2d(2).state_dict()) == []


# -------------------------------------------------------------------- torch
def _golden_pool_cases():
    with np.load(GOLDEN, allow_pickle=False) as data:
        names = sorted({k.split(".")[0] for k in data.files if not k.startswith("conv_")})
        return [(n, json.loads(str(data[f"{n}.args"])), {k.split(".", 1)[1]: data[k] for k in data.files
                                                         if k.startswith(n + ".") and not k.endswith(".args")})
                for n in names]


def _layer_for(args):
    args = dict(args)
    fn = args.pop("function")
    pair = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    return {"max_pool2d": nn.MaxPool2d, "avg_pool2d": nn.AvgPool2d,
            "adaptive_avg_pool2d": nn.AdaptiveAvgPool2d}[fn](**pair)


@pytest.mark.parametrize("name, args, arrays", _golden_pool_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_pooling_matches_golden_torch_numbers(xp, name, args, arrays):
    layer = _layer_for(args)
    out = layer(xp.asarray(arrays["x"]))
    dx = layer.backward(xp.asarray(arrays["dout"]))
    assert rel_error(out, arrays["out"]) <= 1e-8
    assert rel_error(dx, arrays["dx"]) <= 1e-8


TORCH_CASES = [
    ("MaxPool2d", dict(kernel_size=3, stride=2, padding=1), (2, 3, 7, 7)),
    ("MaxPool2d", dict(kernel_size=3, stride=2, padding=1), (2, 3, 8, 6)),
    ("MaxPool2d", dict(kernel_size=2), (1, 2, 5, 5)),
    ("MaxPool2d", dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1)), (2, 2, 5, 7)),
    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1), (2, 3, 7, 7)),
    ("AvgPool2d", dict(kernel_size=(3, 2), stride=1), (1, 2, 5, 4)),
    ("AdaptiveAvgPool2d", dict(output_size=1), (2, 3, 5, 7)),
    ("AdaptiveAvgPool2d", dict(output_size=(2, 3)), (2, 2, 4, 6)),
    ("AdaptiveAvgPool2d", dict(output_size=(None, 2)), (1, 2, 3, 4)),
]


@pytest.mark.parametrize("cls, kwargs, x_shape", TORCH_CASES, ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
def test_pooling_matches_torch(xp, cls, kwargs, x_shape, ties):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    # with ties: values from {0, 1, 2}, so most windows hold several maxima
    x = rng.integers(0, 3, x_shape).astype(np.float64) if ties else rng.standard_normal(x_shape)
    xt = torch.tensor(x, requires_grad=True)
    out_t = getattr(torch.nn, cls)(**kwargs)(xt)
    dout = rng.standard_normal(tuple(out_t.shape))
    out_t.backward(torch.tensor(dout))
    layer = getattr(nn, cls)(**kwargs)
    out = layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(dout))
    assert rel_error(out, out_t.detach().numpy()) <= 1e-8
    assert rel_error(dx, xt.grad.numpy()) <= 1e-8


def test_float32_pooling_keeps_dtype(xp):
    x = xp.asarray(np.random.default_rng(7).standard_normal((2, 3, 6, 6)), dtype=np.float32)
    for forward, backward in ((F.maxpool2d_forward, F.maxpool2d_backward),
                              (F.avgpool2d_forward, F.avgpool2d_backward)):
        out, cache = forward(x, 3, 2, 1)
        assert out.dtype == np.float32
        assert backward(xp.ones_like(out), cache).dtype == np.float32
