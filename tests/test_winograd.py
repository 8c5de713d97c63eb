"""Winograd F(2x2, 3x3) and F(4x4, 3x3) (functional/winograd.py, docs/derivations.md §W): finite-difference
gradient checks, agreement with im2col over hypothesis-drawn geometries and torch parity in float64 and
float32, both within the rounding bound of the error analysis, the algorithm choice of conv2d_forward and
Conv2d, and proof that the checks catch a wrong transform. Every test that holds for both variants runs on
both; the matrices and their plans are tested in tests/test_winograd_transforms.py."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigru.functional as F
import minigru.perf
from minigru import backend, nn
from minigru.functional import winograd, winograd_transforms
from minigru.functional.conv import conv_geometry
from minigru.gradcheck import check_gradient, check_module, rel_error

WINOGRAD = list(winograd.WINOGRAD_OUTPUT_BLOCK)      # "winograd": F(2x2, 3x3), "winograd4": F(4x4, 3x3)

# (x shape, out_channels, padding): batch 1, C = K = 1, 1-pixel and 1-row images, odd and
# non-square sizes, padding 0, 1, 2, 3 and pairs, each with a number of output rows or columns that is
# no multiple of 2 or of 4 somewhere.
CASES = [
    ((1, 1, 4, 4), 1, 1),
    ((2, 3, 5, 7), 2, 1),
    ((1, 2, 1, 1), 3, 1),      # the 3x3 kernel as large as the padded 1-pixel image
    ((2, 1, 1, 3), 2, 2),
    ((2, 2, 6, 5), 3, 0),
    ((1, 2, 3, 4), 2, 2),
    ((2, 2, 5, 4), 2, (0, 2)),
    ((1, 2, 7, 7), 2, 1),      # 7x7 as in the hour recipe: F(4x4) has a whole block and one cropped to 3
    ((2, 2, 3, 3), 3, 1),      # 3x3: one F(4x4) tile, cropped by 1
    ((2, 2, 4, 5), 2, 3),      # padding 3: the input gradient crops dout (eq. W8 pads by 2 - 3)
    ((1, 2, 6, 3), 2, (3, 1)),
]
IDS = ["b1-c1-k1", "odd", "1-pixel", "1-row-pad2", "pad0", "pad2", "pad-pair", "7x7", "3x3", "pad3", "pad-3-1"]


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
@pytest.mark.parametrize("algorithm", WINOGRAD)
@pytest.mark.parametrize("x_shape, out_channels, padding", CASES, ids=IDS)
def test_winograd_gradcheck(xp, x_shape, out_channels, padding, algorithm):
    # check_gradient: centred differences compared with the noise floor of eq. G2, which the exact zeros
    # of dw need (1-pixel image: only the centre tap sees a pixel). F(4x4, 3x3) rounds its float64 forward
    # pass about 10x more than F(2x2, 3x3), and the difference of two such passes is that rounding / eps.
    x, w, b = make_case(xp, x_shape, out_channels)
    out, dx, dw, db, dout = run(x, w, b, padding, algorithm)

    def f(_):
        return F.conv2d_forward(x, w, b, 1, padding, algorithm=algorithm)[0]

    comparisons = {name: check_gradient(grad, f, param, dout) for name, grad, param in (("dx", dx, x),
                                                                                         ("dw", dw, w), ("db", db, b))}
    assert all(c.passed for c in comparisons.values()), {name: str(c) for name, c in comparisons.items()}


@pytest.mark.parametrize("algorithm", WINOGRAD)
@pytest.mark.parametrize("bias", [True, False])
def test_winograd_layer_gradcheck(bias, algorithm):
    layer = nn.Conv2d(2, 3, 3, padding=1, bias=bias, algorithm=algorithm, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 3))
    report = check_module(layer, x, verbose=False)
    assert report.passed, str(report)


@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_batch_zero(xp, algorithm):
    x, w, b = make_case(xp, (0, 3, 5, 4), 2)
    out, dx, dw, db, _ = run(x, w, b, 1, algorithm)
    assert out.shape == (0, 2, 5, 4) and dx.shape == x.shape
    assert float(abs(dw).max()) == 0 and float(abs(db).max()) == 0


# ------------------------------------------------------------ the rounding bound (derivations §W, "Precision")
U32, U64 = 2.0 ** -24, 2.0 ** -53     # the unit roundoffs of float32 and float64


def gamma(n: int, u: float) -> float:
    """γ_n = n·u / (1 - n·u): a result that went through n roundings is off by at most γ_n times the sum of
    the magnitudes of its terms (Higham, "Accuracy and Stability of Numerical Algorithms", §3.1, §3.4)."""
    return n * u / (1 - n * u)


def _paste(dest, src, top, left):
    """dest[:, :, top:, left:] = src (N, C, h, w) as far as it fits; a negative offset crops src instead."""
    h, w = src.shape[2:]
    r0, c0 = max(0, -top), max(0, -left)
    r1, c1 = min(h, dest.shape[2] - top), min(w, dest.shape[3] - left)
    if r1 > r0 and c1 > c0:
        dest[:, :, r0 + top:r1 + top, c0 + left:c1 + left] = src[:, :, r0:r1, c0:c1]


def winograd_magnitudes(x, w, b, dout, padding, m):
    """What Winograd F(m x m, 3 x 3) sums, in absolute values, in float64 by plain NumPy on the matrices
    alone (not the kernels): |A^T| (|G||g||G^T| ⊙ |B^T||d||B|) |A| summed over the channels, plus |b|, for
    out (eq. W5); the same with the rotated filters on the padded dout for dx (eq. W8); and
    |G^T| (sum over tiles of |A||dY||A^T| ⊙ |B^T||d||B|) |G| for dw (eq. W9). Each is at least the sum of
    the |terms| of the direct convolution's result (the product of the three matrices is the direct
    correlation, so the absolute values of its factors sum to at least 1 on each term it keeps).
    Returns (out, dx, dw, P), P the number of tiles the weight gradient sums over."""
    variant = winograd_transforms.winograd_variant(m)
    BT, G, AT = abs(variant.BT), abs(variant.G), abs(variant.AT)
    t = m + 2
    geo = conv_geometry(x.shape, 3, 1, padding)

    def correlate(image, filters, top, left, Ho, Wo):           # image (N, C, h, w), filters (K, C, 3, 3)
        th, tw = -(-Ho // m), -(-Wo // m)
        big = np.zeros((*image.shape[:2], m * th + 2, m * tw + 2))
        _paste(big, image, top, left)
        tiles = np.lib.stride_tricks.sliding_window_view(big, (t, t), axis=(2, 3))[:, :, ::m, ::m]
        V = BT @ tiles @ BT.T                                    # (N, C, th, tw, t, t)
        Y = AT @ np.einsum("nchwij,kcij->nkhwij", V, G @ filters @ G.T) @ AT.T    # (N, K, th, tw, m, m)
        return Y.transpose(0, 1, 2, 4, 3, 5).reshape(*Y.shape[:2], m * th, m * tw)[:, :, :Ho, :Wo], V

    top, _, left, _ = geo.pads
    out, V = correlate(abs(x), abs(w), top, left, geo.Ho, geo.Wo)
    out = out + (0 if b is None else abs(b).reshape(1, -1, 1, 1))
    dx, _ = correlate(abs(dout), abs(w)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), 2 - top, 2 - left, geo.H, geo.W)
    th, tw = V.shape[2:4]
    dy = np.zeros((*dout.shape[:2], m * th, m * tw))
    dy[:, :, :geo.Ho, :geo.Wo] = abs(dout)
    Z = AT.T @ dy.reshape(*dy.shape[:2], th, m, tw, m).transpose(0, 1, 2, 4, 3, 5) @ AT     # (N, K, th, tw, t, t)
    dw = G.T @ np.einsum("nkhwij,nchwij->kcij", Z, V) @ G
    return out, dx, dw, x.shape[0] * th * tw


def rounding_bounds(x, w, b, dout, padding, m, u, u_ref=U64):
    """Largest |error| allowed, entry by entry, between out, dx, dw, db of a Winograd F(m x m, 3 x 3) layer
    computed in unit roundoff u and a direct reference computed in u_ref (torch or im2col in float64).

    Winograd: γ_n times the magnitudes of :func:`winograd_magnitudes`, n the most roundings on a path from
    an input to the result (t = m + 2): B^T d B 2t and A^T M A 2t (t per stage: each path through a
    stage's plan rounds at most t times, tests/test_winograd_transforms.py), U = G g G^T 11 (G ⊗ G is
    rounded to the dtype once, then 9 products are summed), the product and the sum over the C channels C,
    the bias 1: n = C + 4t + 12; dx alike over the K filters; dw: Z = A dY A^T 2t, V 2t, the product and
    the sum over P tiles P, G^T dU G t² + 1; db: a sum of N·Ho·Wo numbers. The reference: γ of its own sums
    of products (9C + 1 with the bias, 9K + 1, N·Ho·Wo + 1) times the same magnitudes, which are at least its
    own.
    This is a worst case, which no data can exceed (barring overflow and underflow): measured float32 errors
    are 0.1-4% of it (the shapes of test_winograd_matches_torch), so a smaller loss of precision is left to
    test_float32_error_stays_where_it_was_measured.
    """
    x, w, dout = (backend.to_numpy(a).astype(np.float64) for a in (x, w, dout))
    b = None if b is None else backend.to_numpy(b).astype(np.float64)
    out, dx, dw, P = winograd_magnitudes(x, w, b, dout, padding, m)
    C, K, t = x.shape[1], w.shape[0], m + 2
    rows = dout.shape[0] * dout.shape[2] * dout.shape[3]
    return ((gamma(C + 4 * t + 12, u) + gamma(9 * C + 1, u_ref)) * out,
            (gamma(K + 4 * t + 12, u) + gamma(9 * K + 1, u_ref)) * dx,
            (gamma(P + 4 * t + t * t + 1, u) + gamma(rows + 1, u_ref)) * dw,
            (gamma(rows, u) + gamma(rows, u_ref)) * abs(dout).sum(axis=(0, 2, 3)))


def assert_within(results, references, bounds, names=("out", "dx", "dw", "db")):
    for name, got, want, bound in zip(names, results, references, bounds):
        if want is None:
            assert got is None, name
            continue
        assert got.shape == want.shape, name
        error = np.abs(backend.to_numpy(got).astype(np.float64) - backend.to_numpy(want).astype(np.float64))
        assert (error <= bound).all(), (name, float(error.max()), float((error / np.maximum(bound, 1e-300)).max()))


# ------------------------------------------------------------ against im2col
@pytest.mark.parametrize("algorithm", WINOGRAD)
@pytest.mark.parametrize("x_shape, out_channels, padding", CASES, ids=IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_winograd_matches_im2col(xp, x_shape, out_channels, padding, bias, algorithm):
    x, w, b = make_case(xp, x_shape, out_channels, seed=2, bias=bias)
    ours = run(x, w, b, padding, algorithm)
    ref = run(x, w, b, padding, "im2col", dout=ours[-1])
    for name, got, want in zip(("out", "dx", "dw", "db"), ours, ref):
        assert (got is None) == (want is None) and (got is None or got.dtype == want.dtype), name
    assert_within(ours, ref, rounding_bounds(x, w, b, ours[-1], padding, winograd.WINOGRAD_OUTPUT_BLOCK[algorithm],
                                             U64))


@pytest.mark.parametrize("algorithm", WINOGRAD)
@pytest.mark.parametrize("x_shape, out_channels, padding", CASES, ids=IDS)
def test_winograd_matches_the_loops(x_shape, out_channels, padding, algorithm):
    # The oracle of functional/conv_naive.py: one dot product per output pixel (eq. C1), one window at a
    # time back (eq. C10), no matrix product and no transform.
    x, w, b = make_case(np, x_shape, out_channels, seed=3)
    ours = run(x, w, b, padding, algorithm)
    out, cache = F.conv2d_naive_forward(x, w, b, 1, padding)
    ref = (out, *F.conv2d_naive_backward(ours[-1], cache))
    m = winograd.WINOGRAD_OUTPUT_BLOCK[algorithm]
    assert_within(ours, ref, rounding_bounds(x, w, b, ours[-1], padding, m, U64))


@st.composite
def geometry(draw):
    """(N, C, K, H, W, padding) of a 3x3 stride-1 layer that torch accepts: the padded image is >= 3x3. Sizes
    up to 12 with padding up to 3 give outputs of 1 to 16 rows: every remainder modulo 2 and 4."""
    pad = draw(st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)), st.just("same")))
    ph, pw = (1, 1) if pad == "same" else (pad, pad) if isinstance(pad, int) else pad
    H = draw(st.integers(max(1, 3 - 2 * ph), 12))
    W = draw(st.integers(max(1, 3 - 2 * pw), 12))
    return draw(st.integers(0, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), H, W, pad


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometry(), st.sampled_from(WINOGRAD), st.booleans(), st.booleans())
def test_winograd_matches_im2col_on_any_geometry(geo, algorithm, bias, need_dx):
    N, C, K, H, W, padding = geo
    x, w, b = make_case(np, (N, C, H, W), K, seed=H * 10 + W, bias=bias)
    out, cache = F.conv2d_forward(x, w, b, 1, padding, algorithm=algorithm)
    ref, ref_cache = F.conv2d_forward(x, w, b, 1, padding, algorithm="im2col")
    dout = np.random.default_rng(N + C).standard_normal(out.shape)
    bounds = rounding_bounds(x, w, b, dout, padding, winograd.WINOGRAD_OUTPUT_BLOCK[algorithm], U64)
    assert_within((out, *F.conv2d_backward(dout, cache, need_dx=need_dx)),
                  (ref, *F.conv2d_backward(dout, ref_cache, need_dx=need_dx)), bounds)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 6), st.integers(1, 6), st.integers(0, 5), st.integers(0, 2),
       st.integers(1, 40))
def test_the_blocked_copy_back_to_nchw_is_a_transpose(C, H, W, N, crop, block_pixels):
    # _to_nchw copies a few channels at a time (COPY_BLOCK_PIXELS pixels a block, for the cache): every
    # block size, with a last block that is cut short or not, and a cropped source (the outputs past a
    # size that is no multiple of m), must give exactly the transposed array.
    full = np.arange(C * (H + crop) * (W + crop) * N, dtype=np.float32).reshape(C, H + crop, W + crop, N)
    src = full[:, :H, :W]
    old = winograd.COPY_BLOCK_PIXELS
    winograd.COPY_BLOCK_PIXELS = block_pixels
    try:
        out = winograd._to_nchw(src, np.full((N, C, H, W), np.nan, dtype=np.float32))
    finally:
        winograd.COPY_BLOCK_PIXELS = old
    np.testing.assert_array_equal(out, np.transpose(src, (3, 0, 1, 2)))


@pytest.mark.parametrize("algorithms", [["winograd"] * 4, ["winograd4"] * 4, ["winograd", "winograd4"] * 3])
@pytest.mark.parametrize("sizes, paddings", [(((6, 5),) * 4, (0, 2, 0, 2)),     # one size, two paddings
                                              (((6, 6), (5, 5), (6, 6), (5, 6), (6, 5)), (1,) * 5)])  # same tiles
def test_reused_work_buffers_do_not_leak_between_calls(sizes, paddings, algorithms):
    # The padded input and padded dout are reused buffers whose zero border is never rewritten: a call
    # with another padding, or another image size with the same number of tiles (6 and 5 both need 3
    # tiles of 2 with padding 1), must not leave numbers in the border that the next call reads. The two
    # variants share a buffer where their padded shapes agree (an output of 4 rows: 2 tiles of 2 or 1 of 4).
    for k, ((H, W), padding, algorithm) in enumerate(zip(sizes, paddings, algorithms)):
        x, w, b = make_case(np, (2, 3, H, W), 4, seed=5 + k)
        ours = run(x, w, b, padding, algorithm, seed=k)
        ref = run(x, w, b, padding, "im2col", dout=ours[-1])
        assert_within(ours[:3], ref[:3], rounding_bounds(x, w, b, ours[-1], padding,
                                                         winograd.WINOGRAD_OUTPUT_BLOCK[algorithm], U64))


# ------------------------------------------------------------ torch, float64 and float32
@pytest.mark.parametrize("algorithm", WINOGRAD)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_shape, out_channels, padding", [((2, 16, 6, 7), 8, 1), ((1, 4, 5, 5), 16, 2),
                                                             ((2, 8, 15, 15), 8, 1)])
def test_winograd_matches_torch(dtype, x_shape, out_channels, padding, algorithm):
    # Within the rounding bound of the error analysis (rounding_bounds): F(4x4, 3x3) rounds about 10x more
    # than F(2x2, 3x3) in float32 (derivations §W, "Precision"), and both stay inside their bound. The
    # inputs are float32 numbers, so that torch's float64 reference sees exactly what the kernels see.
    torch = pytest.importorskip("torch")
    x, w, b = (a.astype(np.float32).astype(np.float64) for a in make_case(np, x_shape, out_channels, seed=7))
    out, dx, dw, db, dout = run(x.astype(dtype), w.astype(dtype), b.astype(dtype), padding, algorithm)
    assert out.dtype == dx.dtype == dw.dtype == dtype
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))     # float64 references
    out_t = torch.nn.functional.conv2d(xt, wt, bt, stride=1, padding=padding)
    out_t.backward(torch.tensor(dout.astype(np.float64)))
    u = U64 if dtype == np.float64 else U32
    assert_within((out, dx, dw, db), tuple(a.detach().numpy() for a in (out_t, xt.grad, wt.grad, bt.grad)),
                  rounding_bounds(x, w, b, dout, padding, winograd.WINOGRAD_OUTPUT_BLOCK[algorithm], u))


# float32 error / largest |output| on a 64 -> 64 layer at 7x7 (Kaiming-scaled weights, as trained), measured
# over 4 seeds: F(2x2, 3x3) at most 5.8e-7 (im2col: 7.0e-7), F(4x4, 3x3) at most 5.1e-6, for out, dx and
# dw alike (on the hour recipe's layers at batch 32: up to 9e-7 and 1.3e-5). The limits are 4x these:
# room for other BLAS summation orders and seeds, while a precision loss of 10x fails.
MEASURED_LIMIT = {"winograd": 2e-6, "winograd4": 2e-5}


@pytest.mark.parametrize("algorithm", WINOGRAD)
def test_float32_error_stays_where_it_was_measured(algorithm):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 64, 7, 7)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * np.sqrt(2 / (9 * 64))).astype(np.float32)
    dout = rng.standard_normal((8, 64, 7, 7)).astype(np.float32)
    exact, cache = F.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, 1, 1, algorithm="im2col")
    reference = (exact, *F.conv2d_backward(dout.astype(np.float64), cache)[:2])
    out, cache = F.conv2d_forward(x, w, None, 1, 1, algorithm=algorithm)
    for name, got, want in zip(("out", "dx", "dw"), (out, *F.conv2d_backward(dout, cache)[:2]), reference):
        error = np.abs(got - want).max() / np.abs(want).max()
        assert error <= MEASURED_LIMIT[algorithm], (name, error)


# ------------------------------------------------------------ choosing the algorithm
@pytest.mark.parametrize("algorithm", WINOGRAD)
@pytest.mark.parametrize("kwargs", [dict(kernel_size=5, padding=2), dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=(3, 1), padding=1), dict(kernel_size=(3, 3), stride=(1, 2))])
def test_winograd_refuses_other_geometries(kwargs, algorithm):
    kernel = kwargs["kernel_size"]
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x, w = np.zeros((1, 2, 6, 6)), np.zeros((2, 2, kh, kw))
    with pytest.raises(ValueError, match=f"algorithm='{algorithm}' needs a 3x3 kernel with stride 1") as err:
        F.conv2d_forward(x, w, None, kwargs.get("stride", 1), kwargs.get("padding", 0), algorithm=algorithm)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=f"algorithm='{algorithm}' needs a 3x3 kernel with stride 1"):
        nn.Conv2d(2, 2, algorithm=algorithm, **kwargs)


def test_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="algorithm must be one of 'auto', 'im2col', 'winograd', 'winograd4', "
                                         "got 'fft'"):
        F.conv2d_forward(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), None, 1, 1, algorithm="fft")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        nn.Conv2d(1, 1, 3, algorithm="Winograd")


def test_tiles_of_the_other_variant_are_refused():
    # The backward pass of one variant cannot take the other's tiles (t² = 16 or 36 rows): a clear error.
    x, w, b = make_case(np, (2, 3, 6, 5), 2)
    _, v = winograd.winograd_conv2d_forward(x, w, b, (1, 1, 1, 1), m=2)
    with pytest.raises(ValueError, match=r"the tiles of F\(4x4, 3x3\) for this layer have shape \(36, 3, 8\)"):
        winograd.winograd_conv2d_backward(np.zeros((2, 2, 6, 5)), v, w, x.shape, (1, 1, 1, 1), True, m=4)


MIN_N = winograd.WINOGRAD_MIN_BATCH
KERNELS = {False: winograd.WINOGRAD_MIN_CHANNELS, True: winograd.WINOGRAD_MIN_CHANNELS_AVX512}
"""avx512 (whether NumPy's BLAS runs AVX-512 kernels) -> the channel threshold of algorithm="auto"."""


@pytest.mark.parametrize("avx512", [False, True], ids=["avx2-blas", "avx512-blas"])
@pytest.mark.parametrize("c_in, c_out, kernel, stride, batch, expected", [   # channels as (times min_c, plus)
    ((1, 0), (1, 0), 3, 1, MIN_N, "winograd"),
    ((1, -1), (2, 0), 3, 1, MIN_N, "im2col"),
    ((2, 0), (1, -1), 3, 1, MIN_N, "im2col"),
    ((1, 0), (1, 0), 3, 1, MIN_N - 1, "im2col"),
    ((1, 0), (1, 0), 3, 2, MIN_N, "im2col"),
    ((1, 0), (1, 0), 5, 1, MIN_N, "im2col"),
])
def test_auto_picks_winograd_only_for_wide_3x3_stride1_layers(monkeypatch, avx512, c_in, c_out, kernel, stride,
                                                               batch, expected):
    # As Conv2d's docstring says: Winograd for 3x3 stride-1 layers with at least winograd_min_channels()
    # input and output channels (more where the BLAS runs AVX-512 kernels) and batches of at least
    # WINOGRAD_MIN_BATCH images, im2col otherwise; and the explicit choices are kept.
    monkeypatch.setattr(minigru.perf, "blas_has_avx512_kernels", lambda info=None: avx512)
    min_c = KERNELS[avx512]
    assert winograd.winograd_min_channels() == min_c
    in_channels, out_channels = (c_in[0] * min_c + c_in[1]), (c_out[0] * min_c + c_out[1])
    x = np.random.default_rng(0).standard_normal((batch, in_channels, 2, 2)).astype(np.float32)
    for algorithm, runs in (("auto", expected), ("im2col", "im2col")):
        layer = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                          algorithm=algorithm, rng=0)
        layer(x)
        assert layer.__dict__["_cache"].algorithm == runs, algorithm
    assert "algorithm" not in repr(nn.Conv2d(2, 2, 3))
    assert repr(nn.Conv2d(2, 2, 3, algorithm="winograd")).endswith(", algorithm='winograd')")
    assert repr(nn.Conv2d(2, 2, 3, algorithm="winograd4")).endswith(", algorithm='winograd4')")


@pytest.mark.parametrize("avx512, channels, expected", [
    (False, (64, 128), "winograd"), (True, (64, 128), "im2col"), (True, (64, 256), "im2col"),
    (True, (128, 128), "winograd"), (True, (256, 256), "winograd"), (False, (32, 64), "im2col"),
])
def test_auto_needs_wider_layers_with_avx512_kernels(monkeypatch, avx512, channels, expected):
    # With OpenBLAS's AVX-512 kernels the GEMMs that Winograd saves cost half as much, its transforms
    # the same: the 64-channel layers of the benchmark CNNs and of cnn-gru-hour ran 1.0-1.35x slower
    # with Winograd there (docs/performance.md, item 9), so "auto" keeps im2col for them.
    monkeypatch.setattr(minigru.perf, "blas_has_avx512_kernels", lambda info=None: avx512)
    assert winograd.conv_algorithm("auto", 3, 1, *channels, batch=32) == expected


# ------------------------------------------------------------ the checks can fail
@pytest.mark.parametrize("m, matrix, row, col", [(2, "BT", 1, 2), (2, "G", 1, 0), (2, "AT", 1, 3),
                                                 (4, "BT", 3, 1), (4, "G", 3, 1), (4, "AT", 2, 3)])
def test_a_wrong_transform_matrix_is_caught(monkeypatch, m, matrix, row, col):
    # Change one entry of one transform matrix: forward and input gradient must then disagree with im2col
    # by far more than the tolerances above, so those tests would fail.
    variant = winograd_transforms.VARIANTS[m]
    wrong = getattr(variant, matrix).copy()
    wrong[row, col] += 0.5
    monkeypatch.setitem(winograd_transforms.VARIANTS, m, variant._replace(**{matrix: wrong}))
    algorithm = {2: "winograd", 4: "winograd4"}[m]
    x, w, b = make_case(np, (2, 3, 6, 5), 2, seed=9)
    ours = run(x, w, b, 1, algorithm)
    ref = run(x, w, b, 1, "im2col", dout=ours[-1])
    assert rel_error(ours[0], ref[0]) > 1e-3 and rel_error(ours[1], ref[1]) > 1e-3
