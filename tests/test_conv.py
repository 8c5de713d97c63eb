"""Conv2d: im2col/col2im, the fast and naive kernels, the layer; against finite differences, the loop
reference, torch (float64) and golden torch numbers."""
import json
from pathlib import Path

import numpy as np
import pytest

import minigru.functional as F
from minigru import backend, nn
from minigru.gradcheck import check_module, numerical_gradient, rel_error

GOLDEN = Path(__file__).parent / "golden" / "conv.npz"

# (x shape, out_channels, kernel_size, stride, padding): batch 1, C=1, stride 2, padding 0/1/2,
# non-square kernels/images/strides, odd sizes, 1x1 kernels, "same" with an even kernel.
CASES = [
    ((1, 1, 4, 4), 2, 3, 1, 1),
    ((2, 3, 5, 5), 2, 3, 2, 0),
    ((2, 2, 6, 5), 3, 3, 1, 2),
    ((2, 2, 5, 7), 2, (2, 3), (2, 1), (1, 0)),
    ((2, 3, 4, 3), 2, 1, 1, 0),
    ((1, 2, 7, 7), 2, 3, 2, 1),
    ((2, 1, 5, 6), 2, (2, 4), 1, "same"),
    ((1, 2, 4, 5), 1, 3, 1, "valid"),
]
IDS = ["b1-c1", "stride2-pad0", "pad2-nonsquare-img", "nonsquare-kernel-stride", "1x1", "odd-stride2",
       "same-even-kernel", "valid"]


def make_case(xp, x_shape, out_channels, kernel, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = xp.asarray(rng.standard_normal(x_shape))
    w = xp.asarray(rng.standard_normal((out_channels, x_shape[1], kh, kw)))
    b = xp.asarray(rng.standard_normal(out_channels)) if bias else None
    return x, w, b


# ------------------------------------------------------------ im2col / col2im
@pytest.mark.parametrize("merge", [False, True])
def test_im2col_matches_definition(xp, merge):
    x, _, _ = make_case(xp, (2, 3, 5, 6), 1, 1)
    kh, kw, (sh, sw), (ph, pw) = 2, 3, (2, 1), (1, 2)
    cols = backend.to_numpy(F.im2col(x, kh, kw, (sh, sw), (ph, pw), merge_batch=merge))
    xpad = np.pad(backend.to_numpy(x), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = (5 + 2 * ph - kh) // sh + 1, (6 + 2 * pw - kw) // sw + 1
    for n in range(2):
        for c in range(3):
            for i in range(kh):
                for j in range(kw):
                    for a in range(Ho):
                        for b in range(Wo):
                            row, col = (c * kh + i) * kw + j, a * Wo + b
                            got = cols[row, n * Ho * Wo + col] if merge else cols[n, row, col]
                            assert got == xpad[n, c, a * sh + i, b * sw + j]


@pytest.mark.parametrize("x_shape, out_channels, kernel, stride, padding", CASES, ids=IDS)
@pytest.mark.parametrize("merge", [False, True])
def test_col2im_is_the_adjoint_of_im2col(xp, x_shape, out_channels, kernel, stride, padding, merge):
    # <im2col(x), c> == <x, col2im(c)> for all x, c: the definition of the adjoint (eq. C9).
    x, w, _ = make_case(xp, x_shape, out_channels, kernel)
    kh, kw = w.shape[2:]
    cols = F.im2col(x, kh, kw, stride, padding, merge_batch=merge)
    c = xp.asarray(np.random.default_rng(1).standard_normal(cols.shape))
    back = F.col2im(c, x.shape, kh, kw, stride, padding, merge_batch=merge)
    assert back.shape == x.shape
    assert float((cols * c).sum()) == pytest.approx(float((x * back).sum()), rel=1e-12)


def test_col2im_rejects_wrong_shape(xp):
    with pytest.raises(ValueError, match="must have shape"):
        F.col2im(xp.zeros((2, 27, 9)), (2, 3, 4, 4), 3, 3, 1, 1)


# ------------------------------------------------------ fast kernel, gradcheck
def _check_kernel_gradients(xp, forward, backward, x, w, b, stride, padding):
    out, cache = forward(x, w, b, stride, padding)
    dout = xp.asarray(np.random.default_rng(2).standard_normal(out.shape))
    dx, dw, db = backward(dout, cache)
    errors = {"dx": rel_error(dx, numerical_gradient(lambda _: forward(x, w, b, stride, padding)[0], x, dout)),
              "dw": rel_error(dw, numerical_gradient(lambda _: forward(x, w, b, stride, padding)[0], w, dout))}
    if b is not None:
        errors["db"] = rel_error(db, numerical_gradient(lambda _: forward(x, w, b, stride, padding)[0], b, dout))
    return errors


@pytest.mark.parametrize("x_shape, out_channels, kernel, stride, padding", CASES, ids=IDS)
def test_conv2d_kernel_gradcheck(xp, x_shape, out_channels, kernel, stride, padding):
    x, w, b = make_case(xp, x_shape, out_channels, kernel)
    errors = _check_kernel_gradients(xp, F.conv2d_forward, F.conv2d_backward, x, w, b, stride, padding)
    assert max(errors.values()) <= 1e-6, errors


@pytest.mark.parametrize("x_shape, out_channels, kernel, stride, padding", CASES[:4], ids=IDS[:4])
def test_conv2d_naive_kernel_gradcheck(xp, x_shape, out_channels, kernel, stride, padding):
    x, w, b = make_case(xp, x_shape, out_channels, kernel)
    errors = _check_kernel_gradients(xp, F.conv2d_naive_forward, F.conv2d_naive_backward, x, w, b, stride, padding)
    assert max(errors.values()) <= 1e-6, errors


@pytest.mark.parametrize("x_shape, out_channels, kernel, stride, padding", CASES, ids=IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_fast_matches_naive(xp, x_shape, out_channels, kernel, stride, padding, bias):
    x, w, b = make_case(xp, x_shape, out_channels, kernel, seed=3, bias=bias)
    out, cache = F.conv2d_forward(x, w, b, stride, padding)
    ref, ref_cache = F.conv2d_naive_forward(x, w, b, stride, padding)
    assert rel_error(out, ref) <= 1e-12
    dout = xp.asarray(np.random.default_rng(4).standard_normal(out.shape))
    grads, ref_grads = F.conv2d_backward(dout, cache), F.conv2d_naive_backward(dout, ref_cache)
    for name, g, r in zip(("dx", "dw", "db"), grads, ref_grads):
        if r is None:
            assert g is None
        else:
            assert g.shape == r.shape and g.dtype == r.dtype
            assert rel_error(g, r) <= 1e-12, name


def test_float32_matches_float64(xp):
    x, w, b = make_case(xp, (3, 4, 9, 8), 5, 3)
    out64, cache64 = F.conv2d_forward(x, w, b, 1, 1)
    out32, cache32 = F.conv2d_forward(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), 1, 1)
    assert out32.dtype == np.float32
    assert float(abs(out32 - out64).max()) < 1e-4
    dout = xp.asarray(np.random.default_rng(5).standard_normal(out64.shape))
    for g32, g64 in zip(F.conv2d_backward(dout.astype(np.float32), cache32), F.conv2d_backward(dout, cache64)):
        assert g32.dtype == np.float32 and float(abs(g32 - g64).max()) < 1e-3


def test_need_dx_false_skips_input_gradient(xp):
    x, w, b = make_case(xp, (2, 2, 5, 5), 3, 3)
    out, cache = F.conv2d_forward(x, w, b, 1, 1)
    dout = xp.ones_like(out)
    dx, dw, db = F.conv2d_backward(dout, cache, need_dx=False)
    _, dw_ref, db_ref = F.conv2d_naive_backward(dout, F.conv2d_naive_forward(x, w, b, 1, 1)[1])
    assert dx is None
    assert rel_error(dw, dw_ref) <= 1e-12 and rel_error(db, db_ref) <= 1e-12


def test_reused_work_buffers_do_not_leak_between_calls(xp):
    # Two forwards of the same shape before either backward (and a non-contiguous input):
    # each cache must still give its own gradients.
    x1, w, b = make_case(xp, (2, 3, 6, 6), 4, 3, seed=6)
    x2 = xp.asarray(np.random.default_rng(7).standard_normal((2, 6, 6, 3))).transpose(0, 3, 1, 2)
    out1, cache1 = F.conv2d_forward(x1, w, b, 1, 1)
    out2, cache2 = F.conv2d_forward(x2, w, b, 1, 1)
    dout = xp.asarray(np.random.default_rng(8).standard_normal(out1.shape))
    dx1 = F.conv2d_backward(dout, cache1)[0]
    dx2 = F.conv2d_backward(dout, cache2)[0]
    for x, out, dx in ((x1, out1, dx1), (x2, out2, dx2)):
        ref, ref_cache = F.conv2d_naive_forward(x, w, b, 1, 1)
        assert rel_error(out, ref) <= 1e-12
        assert rel_error(dx, F.conv2d_naive_backward(dout, ref_cache)[0]) <= 1e-12


def test_hand_worked_example():
    # 1x1x3x3 image, 2x2 kernel of ones, no padding: each output is the sum of a 2x2 block.
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    out, cache = F.conv2d_forward(x, np.ones((1, 1, 2, 2)), np.array([0.5]))
    np.testing.assert_array_equal(out[0, 0], [[8.5, 12.5], [20.5, 24.5]])
    dx, dw, db = F.conv2d_backward(np.ones((1, 1, 2, 2)), cache)
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])  # windows covering each pixel
    np.testing.assert_array_equal(dw[0, 0], [[8, 12], [20, 24]])
    np.testing.assert_array_equal(db, [4.0])


# ------------------------------------------------------------------- layer
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kwargs, x_shape", [
    (dict(kernel_size=3, stride=1, padding=1), (2, 2, 4, 5)),
    (dict(kernel_size=(3, 2), stride=2, padding=(0, 1)), (1, 2, 5, 4)),
])
def test_conv2d_layer_gradcheck(backend_name, bias, kwargs, x_shape):
    layer = nn.Conv2d(x_shape[1], 3, bias=bias, rng=0, **kwargs)
    x = backend.random_normal(np.random.default_rng(1), x_shape, dtype=np.float64)
    report = check_module(layer, x, verbose=False)
    assert report.passed, str(report)


def test_conv2d_layer_init_and_state_dict(backend_name):
    layer = nn.Conv2d(3, 8, (3, 5), rng=np.random.default_rng(0))
    assert layer.weight.shape == (8, 3, 3, 5) and layer.bias.shape == (8,)
    assert layer.weight.dtype == np.float32 and backend.backend_of(layer.weight.data) == backend_name
    bound = 1 / np.sqrt(3 * 3 * 5)
    w = backend.to_numpy(layer.weight.data)
    assert abs(w).max() <= bound and abs(w).max() > 0.9 * bound  # U(-bound, bound), as torch
    assert abs(backend.to_numpy(layer.bias.data)).max() <= bound
    assert list(layer.state_dict()) == ["weight", "bias"]
    assert nn.Conv2d(3, 8, 3, rng=5).weight.data.tolist() == nn.Conv2d(3, 8, 3, rng=5).weight.data.tolist()
    assert "bias" not in nn.Conv2d(3, 8, 3, bias=False).state_dict()
    assert repr(nn.Conv2d(3, 8, 3, padding=1)) == "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"


@pytest.mark.parametrize("out_channels,in_channels,kernel", [(5, 3, (3, 3)), (2, 4, (3, 3)), (3, 3, (1, 1)),
                                                               (4, 2, (5, 3)), (6, 6, (3, 5))])
def test_dirac_init_copies_channels_through_a_same_padded_convolution(backend_name, out_channels, in_channels,
                                                                      kernel):
    """nn.init.dirac_: the convolution copies input channel i to output channel i for i < min(out, in), and
    outputs 0 on the other channels; the kernel equals torch's nn.init.dirac_ where torch is installed."""
    layer = nn.Conv2d(in_channels, out_channels, kernel, padding=(kernel[0] // 2, kernel[1] // 2), bias=False,
                      rng=0, dtype=np.float64)
    assert nn.init.dirac_(layer.weight) is layer.weight
    x = np.random.default_rng(2).standard_normal((2, in_channels, 6, 7))
    out = backend.to_numpy(layer(backend.to_backend(x)))
    kept = min(out_channels, in_channels)
    np.testing.assert_array_equal(out[:, :kept], x[:, :kept])
    np.testing.assert_array_equal(out[:, kept:], 0.0)
    torch = pytest.importorskip("torch")
    expected = torch.nn.init.dirac_(torch.empty(out_channels, in_channels, *kernel, dtype=torch.float64))
    np.testing.assert_array_equal(backend.to_numpy(layer.weight.data), expected.numpy())


def test_dirac_init_rejects_a_matrix():
    with pytest.raises(ValueError, match=r"dirac_ needs a 4-d convolution kernel \(out, in, kh, kw\), "
                                         r"got shape \(3, 4\)"):
        nn.init.dirac_(np.zeros((3, 4)))


def test_conv2d_layer_backward_accumulates(xp):
    layer = nn.Conv2d(2, 3, 3, padding=1, rng=0).double()
    x = xp.asarray(np.random.default_rng(1).standard_normal((2, 2, 4, 4)))
    dout = xp.ones((2, 3, 4, 4))
    layer(x)
    layer.backward(dout)
    first = layer.weight.grad.copy()
    layer(x)
    layer.backward(dout)
    assert rel_error(layer.weight.grad, 2 * first) <= 1e-14


# ---------------------------------------------------------------- bad input
def test_conv2d_layer_rejects_bad_input(xp):
    layer = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got \(8, 5, 5, 3\): channels-last"):
        layer(xp.zeros((8, 5, 5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"got \(3, 5, 5\): add a batch axis"):
        layer(xp.zeros((3, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got \(2, 4, 5, 5\)"):
        layer(xp.zeros((2, 4, 5, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        layer(xp.zeros((2, 3, 5, 5), dtype=np.uint8))
    with pytest.raises(TypeError, match="float32 parameters but got a float64 input"):
        layer(xp.zeros((2, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"2x2 pixels .* smaller than the 3x3 kernel"):
        layer(xp.zeros((2, 3, 2, 2), dtype=np.float32))
    with pytest.raises(RuntimeError, match="needs a forward"):
        layer.backward(xp.zeros((2, 4, 3, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="expected a NumPy or CuPy array"):
        layer([[1.0]])


def test_conv2d_rejects_bad_arguments(xp):
    x, w, b = make_case(xp, (2, 3, 5, 5), 4, 3)
    with pytest.raises(ValueError, match="'same' is not supported for strided"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding must be >= 0"):
        F.conv2d_forward(x, w, b, 1, -1)
    with pytest.raises(ValueError, match="stride must be positive"):
        F.conv2d_forward(x, w, b, 0, 1)
    with pytest.raises(ValueError, match="padding must be an int, a pair"):
        F.conv2d_forward(x, w, b, 1, "full")
    with pytest.raises(ValueError, match="x has 3 channels"):
        F.conv2d_forward(x, w[:, :2], b, 1, 1)
    with pytest.raises(TypeError, match="x is float64 but weight/bias are float32"):
        F.conv2d_forward(x, w.astype(np.float32), None)
    with pytest.raises(ValueError, match="bias must have shape"):
        F.conv2d_forward(x, w, b[:2])
    out, cache = F.conv2d_forward(x, w, b, 1, 1)
    with pytest.raises(ValueError, match=r"conv2d_backward: dout must have shape \(2, 4, 5, 5\) .* got \(2, 4, 4, 5\)"):
        F.conv2d_backward(out[:, :, :4], cache)
    with pytest.raises(TypeError, match="dout is float32 but the forward pass ran in float64"):
        F.conv2d_backward(out.astype(np.float32), cache)


# ------------------------------------------------------------------ torch
def _golden_conv_cases():
    with np.load(GOLDEN, allow_pickle=False) as data:
        names = sorted({k.split(".")[0] for k in data.files if k.startswith("conv_")})
        return [(n, json.loads(str(data[f"{n}.args"])), {k.split(".", 1)[1]: data[k] for k in data.files
                                                         if k.startswith(n + ".") and not k.endswith(".args")})
                for n in names]


def _layer_with(weights, args, xp):
    w = weights["weight"]
    layer = nn.Conv2d(w.shape[1], w.shape[0], args["kernel_size"], args["stride"], args["padding"],
                      bias=args["bias"], dtype=np.float64)
    layer.load_state_dict({k: xp.asarray(weights[k]) for k in ("weight", "bias") if k in weights})
    return layer


@pytest.mark.parametrize("name, args, arrays", _golden_conv_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_conv2d_matches_golden_torch_numbers(xp, name, args, arrays):
    layer = _layer_with(arrays, args, xp)
    out = layer(xp.asarray(arrays["x"]))
    dx = layer.backward(xp.asarray(arrays["dout"]))
    assert rel_error(out, arrays["out"]) <= 1e-8
    assert rel_error(dx, arrays["dx"]) <= 1e-8
    assert rel_error(layer.weight.grad, arrays["dweight"]) <= 1e-8
    if args["bias"]:
        assert rel_error(layer.bias.grad, arrays["dbias"]) <= 1e-8


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("x_shape, out_channels, kernel, stride, padding", CASES, ids=IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_matches_torch(xp, x_shape, out_channels, kernel, stride, padding, bias):
    torch = pytest.importorskip("torch")
    tconv = torch.nn.Conv2d(x_shape[1], out_channels, kernel, stride, padding, bias=bias, dtype=torch.float64)
    layer = nn.Conv2d(x_shape[1], out_channels, kernel, stride, padding, bias=bias, dtype=np.float64)
    layer.load_state_dict(tconv.state_dict())  # torch's own initialisation, copied over
    rng = np.random.default_rng(9)
    x = rng.standard_normal(x_shape)
    xt = torch.tensor(x, requires_grad=True)
    out_t = tconv(xt)
    dout = rng.standard_normal(tuple(out_t.shape))
    out_t.backward(torch.tensor(dout))
    out = layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(dout))
    assert rel_error(out, out_t.detach().numpy()) <= 1e-8
    assert rel_error(dx, xt.grad.numpy()) <= 1e-8
    assert rel_error(layer.weight.grad, tconv.weight.grad.numpy()) <= 1e-8
    if bias:
        assert rel_error(layer.bias.grad, tconv.bias.grad.numpy()) <= 1e-8


def test_forward_cache_is_named_and_holds_the_columns_of_eq_c4():
    # The cache is a Conv2dCache read by name; its columns follow eq. C4 in the merged layout,
    # checked here against the padded input element by element.
    x, w, b = make_case(np, (2, 3, 4, 5), 4, 3, seed=9)
    _, cache = F.conv2d_forward(x, w, b, 1, 1)
    assert isinstance(cache, F.Conv2dCache)
    assert cache.weight is w and cache.has_bias and cache.x_shape == (2, 3, 4, 5)
    assert (cache.stride, cache.padding) == (1, 1)
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for n, c, i, j, a, bb in [(0, 0, 0, 0, 0, 0), (1, 2, 2, 1, 3, 4), (1, 1, 1, 2, 2, 0), (0, 2, 2, 2, 3, 4)]:
        assert cache.cols[(c * 3 + i) * 3 + j, n * 4 * 5 + a * 5 + bb] == xpad[n, c, a + i, bb + j]
    assert F.conv2d_forward(x, w, None, 1, 1)[1].has_bias is False
