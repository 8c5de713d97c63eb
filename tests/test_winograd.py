"""Winograd F(2x2, 3x3) (functional/winograd.py, docs/derivations.md §W): finite-difference gradient
checks, agreement with im2col over hypothesis-drawn geometries, torch parity in float64 and float32,
the algorithm choice of conv2d_forward and Conv2d, and proof that the checks catch a wrong transform."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigru.functional as F
from minigru import backend, nn
from minigru.functional import winograd
from minigru.gradcheck import check_module, numerical_gradient, rel_error

# (x shape, out_channels, padding): batch 1, C = K = 1, 1-pixel and 1-row images, odd and
# non-square sizes, padding 0, 1, 2 and a pair, each with an odd number of output rows somewhere.
CASES = [
    ((1, 1, 4, 4), 1, 1),
    ((2, 3, 5, 7), 2, 1),
    ((1, 2, 1, 1), 3, 1),
    ((2, 1, 1, 3), 2, 2),
    ((2, 2, 6, 5), 3, 0),
    ((1, 2, 3, 4), 2, 2),
    ((2, 2, 5, 4), 2, (0, 2)),
]
IDS = ["b1-c1-k1", "odd", "1-pixel", "1-row-pad2", "pad0", "pad2", "pad-pair"]


def make_case(xp, x_shape, out_channels, seed=0, bias=True, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = xp.asarray(rng.standard_normal(x_shape).astype(dtype))
    w = xp.asarray(rng.standard_normal((out_channels, x_shape[1], 3, 3)).astype(dtype))
    b = xp.asarray(rng.standard_normal(out_channels).astype(dtype)) if bias else None
    return x, w, b


def run(x, w, b, padding, algorithm, dout=None, seed=1):
    """Forward and backward of one algorithm: (out, dx, dw, db, dout)."""
    xp = backend.get_array_module(x)
    out, cache = F.conv2d_forward(x, w, b, 1, padding, algorithm=algorithm)
    assert cache.algorithm == algorithm
    if dout is None:
        dout = xp.asarray(np.random.default_rng(seed).standard_normal(out.shape).astype(x.dtype))
    return (out, *F.conv2d_backward(dout, cache), dout)


# ------------------------------------------------------------ finite differences (float64)
@pytest.mark.parametrize("x_shape, out_channels, padding", CASES, ids=IDS)
def test_winograd_gradcheck(xp, x_shape, out_channels, padding):
    x, w, b = make_case(xp, x_shape, out_channels)
    out, dx, dw, db, dout = run(x, w, b, padding, "winograd")

    def f(_):
        return F.conv2d_forward(x, w, b, 1, padding, algorithm="winograd")[0]

    errors = {"dx": rel_error(dx, numerical_gradient(f, x, dout)),
              "dw": rel_error(dw, numerical_gradient(f, w, dout)),
              "db": rel_error(db, numerical_gradient(f, b, dout))}
    assert max(errors.values()) <= 1e-6, errors


@pytest.mark.parametrize("bias", [True, False])
def test_winograd_layer_gradcheck(bias):
    layer = nn.Conv2d(2, 3, 3, padding=1, bias=bias, algorithm="winograd", rng=0)
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 3))
    report = check_module(layer, x, verbose=False)
    assert report.passed, str(report)


def test_batch_zero(xp):
    x, w, b = make_case(xp, (0, 3, 5, 4), 2)
    out, dx, dw, db, _ = run(x, w, b, 1, "winograd")
    assert out.shape == (0, 2, 5, 4) and dx.shape == x.shape
    assert float(abs(dw).max()) == 0 and float(abs(db).max()) == 0


# ------------------------------------------------------------ against im2col
@pytest.mark.parametrize("x_shape, out_channels, padding", CASES, ids=IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_winograd_matches_im2col(xp, x_shape, out_channels, padding, bias):
    x, w, b = make_case(xp, x_shape, out_channels, seed=2, bias=bias)
    ours = run(x, w, b, padding, "winograd")
    ref = run(x, w, b, padding, "im2col", dout=ours[-1])
    for name, got, want in zip(("out", "dx", "dw", "db"), ours, ref):
        if want is None:
            assert got is None, name
        else:
            assert got.shape == want.shape and got.dtype == want.dtype, name
            assert rel_error(got, want) <= 1e-11, name


@st.composite
def geometry(draw):
    """(N, C, K, H, W, padding) of a 3x3 stride-1 layer that torch accepts: the padded image is >= 3x3."""
    pad = draw(st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)), st.just("same")))
    ph, pw = (1, 1) if pad == "same" else (pad, pad) if isinstance(pad, int) else pad
    H = draw(st.integers(max(1, 3 - 2 * ph), 9))
    W = draw(st.integers(max(1, 3 - 2 * pw), 9))
    return draw(st.integers(0, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), H, W, pad


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometry(), st.booleans(), st.booleans())
def test_winograd_matches_im2col_on_any_geometry(geo, bias, need_dx):
    N, C, K, H, W, padding = geo
    x, w, b = make_case(np, (N, C, H, W), K, seed=H * 10 + W, bias=bias)
    out, cache = F.conv2d_forward(x, w, b, 1, padding, algorithm="winograd")
    ref, ref_cache = F.conv2d_forward(x, w, b, 1, padding, algorithm="im2col")
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    dout = np.random.default_rng(N + C).standard_normal(out.shape)
    for name, got, want in zip(("dx", "dw", "db"), F.conv2d_backward(dout, cache, need_dx=need_dx),
                               F.conv2d_backward(dout, ref_cache, need_dx=need_dx)):
        if want is None:
            assert got is None, name
        else:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("sizes, paddings", [(((6, 5),) * 4, (0, 2, 0, 2)),     # one size, two paddings
                                              (((6, 6), (5, 5), (6, 6), (5, 6), (6, 5)), (1,) * 5)])  # same tiles
def test_reused_work_buffers_do_not_leak_between_calls(sizes, paddings):
    # The padded input and padded dout are reused buffers whose zero border is never rewritten: a call
    # with another padding, or another image size with the same number of tiles (6 and 5 both need 3
    # tiles with padding 1), must not leave numbers in the border that the next call reads.
    for k, ((H, W), padding) in enumerate(zip(sizes, paddings)):
        x, w, b = make_case(np, (2, 3, H, W), 4, seed=5 + k)
        ours = run(x, w, b, padding, "winograd", seed=k)
        ref = run(x, w, b, padding, "im2col", dout=ours[-1])
        for name, got, want in zip(("out", "dx", "dw"), ours, ref):
            assert rel_error(got, want) <= 1e-11, (k, name)


# ------------------------------------------------------------ torch, float64 and float32
U32 = 2.0 ** -24    # float32's unit roundoff


def float32_bound(terms: int) -> float:
    """Largest error allowed, relative to the sum of |terms|, for a float32 result that sums ``terms`` products.

    A float sum of n products is off by at most γ_n ≈ n·u times the sum of their magnitudes (Higham,
    "Accuracy and Stability of Numerical Algorithms", §3.1). Winograd rounds a few more times on the way,
    in its transforms: each entry of B^T d B and A^T M A sums at most 4 numbers and G g G^T at most 9, with
    coefficients of at most 1 (eqs. W1-W5), so a factor 4 on γ_n covers them (derivations §W, "Precision").
    """
    return 4 * terms * U32


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_shape, out_channels, padding", [((2, 16, 6, 7), 8, 1), ((1, 4, 5, 5), 16, 2)])
def test_winograd_matches_torch(dtype, x_shape, out_channels, padding):
    torch = pytest.importorskip("torch")
    x, w, b = make_case(np, x_shape, out_channels, seed=7)
    out, dx, dw, db, dout = run(x.astype(dtype), w.astype(dtype), b.astype(dtype), padding, "winograd")
    assert out.dtype == dx.dtype == dw.dtype == dtype
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))     # float64 references
    out_t = torch.nn.functional.conv2d(xt, wt, bt, stride=1, padding=padding)
    out_t.backward(torch.tensor(dout.astype(np.float64)))
    if dtype == np.float64:
        for name, got, want in (("out", out, out_t), ("dx", dx, xt.grad), ("dw", dw, wt.grad), ("db", db, bt.grad)):
            assert rel_error(got, want.detach().numpy()) <= 1e-11, name
        return
    # float32: each error against the magnitude of the terms it sums (the same sums with |x|, |w|, |dout|)
    C, K = x_shape[1], out_channels
    _, cache = F.conv2d_forward(abs(x), abs(w), abs(b), 1, padding, algorithm="im2col")
    magnitude = (F.conv2d_forward(abs(x), abs(w), abs(b), 1, padding, algorithm="im2col")[0],
                 *F.conv2d_backward(abs(dout.astype(np.float64)), cache)[:2])
    terms = (9 * C + 1, 9 * K, dout[:, 0].size)
    for name, got, want, size, n in zip(("out", "dx", "dw"), (out, dx, dw), (out_t, xt.grad, wt.grad), magnitude,
                                        terms):
        error = np.abs(got - want.detach().numpy()) / np.maximum(size, 1e-30)
        assert error.max() <= float32_bound(n), (name, error.max(), float32_bound(n))


# ------------------------------------------------------------ choosing the algorithm
@pytest.mark.parametrize("kwargs", [dict(kernel_size=5, padding=2), dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=(3, 1), padding=1), dict(kernel_size=(3, 3), stride=(1, 2))])
def test_winograd_refuses_other_geometries(kwargs):
    kernel = kwargs["kernel_size"]
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x, w = np.zeros((1, 2, 6, 6)), np.zeros((2, 2, kh, kw))
    with pytest.raises(ValueError, match="algorithm='winograd' needs a 3x3 kernel with stride 1") as err:
        F.conv2d_forward(x, w, None, kwargs.get("stride", 1), kwargs.get("padding", 0), algorithm="winograd")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="needs a 3x3 kernel with stride 1"):
        nn.Conv2d(2, 2, algorithm="winograd", **kwargs)


def test_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="algorithm must be one of 'auto', 'im2col', 'winograd', got 'fft'"):
        F.conv2d_forward(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), None, 1, 1, algorithm="fft")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        nn.Conv2d(1, 1, 3, algorithm="Winograd")


MIN_C, MIN_N = winograd.WINOGRAD_MIN_CHANNELS, winograd.WINOGRAD_MIN_BATCH


@pytest.mark.parametrize("in_channels, out_channels, kernel, stride, batch, expected", [
    (MIN_C, MIN_C, 3, 1, MIN_N, "winograd"),
    (MIN_C - 1, 2 * MIN_C, 3, 1, MIN_N, "im2col"),
    (2 * MIN_C, MIN_C - 1, 3, 1, MIN_N, "im2col"),
    (MIN_C, MIN_C, 3, 1, MIN_N - 1, "im2col"),
    (MIN_C, MIN_C, 3, 2, MIN_N, "im2col"),
    (MIN_C, MIN_C, 5, 1, MIN_N, "im2col"),
])
def test_auto_picks_winograd_only_for_wide_3x3_stride1_layers(in_channels, out_channels, kernel, stride, batch,
                                                               expected):
    # As Conv2d's docstring says: Winograd for 3x3 stride-1 layers with at least WINOGRAD_MIN_CHANNELS
    # input and output channels and batches of at least WINOGRAD_MIN_BATCH images, im2col otherwise;
    # and the explicit choices are kept.
    x = np.random.default_rng(0).standard_normal((batch, in_channels, 2, 2)).astype(np.float32)
    for algorithm, runs in (("auto", expected), ("im2col", "im2col")):
        layer = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                          algorithm=algorithm, rng=0)
        layer(x)
        assert layer.__dict__["_cache"].algorithm == runs, algorithm
    assert "algorithm" not in repr(nn.Conv2d(2, 2, 3))
    assert repr(nn.Conv2d(2, 2, 3, algorithm="winograd")).endswith(", algorithm='winograd')")


# ------------------------------------------------------------ the checks can fail
@pytest.mark.parametrize("matrix, row, col", [("BT", 1, 2), ("G", 1, 0), ("AT", 1, 3)])
def test_a_wrong_transform_matrix_is_caught(monkeypatch, matrix, row, col):
    # Change one entry of one transform matrix: forward and input gradient must then disagree with im2col
    # by far more than the tolerances above, so those tests would fail.
    wrong = getattr(winograd, matrix).copy()
    wrong[row, col] += 0.5
    monkeypatch.setattr(winograd, matrix, wrong)
    x, w, b = make_case(np, (2, 3, 6, 5), 2, seed=9)
    ours = run(x, w, b, 1, "winograd")
    ref = run(x, w, b, 1, "im2col", dout=ours[-1])
    assert rel_error(ours[0], ref[0]) > 1e-3 and rel_error(ours[1], ref[1]) > 1e-3
