"""The transform matrices of Winograd F(2x2, 3x3) and F(4x4, 3x3) and their application to whole arrays
(functional/winograd_transforms.py, docs/derivations.md §W eqs. W4, W10-W12): the matrices against the
interpolation points they come from and against the direct correlation, the plans against plain matrix
products, and the properties of the plans that the rounding bound of tests/test_winograd.py assumes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import polynomial as P

from minigru.functional import winograd_transforms as T

VARIANTS = [pytest.param(v, id=f"F({m}x{m},3x3)") for m, v in T.VARIANTS.items()]


def toom_cook(points):
    """(BT, G, AT) of F(m, 3) from m + 1 finite points and infinity, built as derivations §W builds them:
    row i of BT the coefficients of the Lagrange numerator prod_{j != i} (x - p_j), the last row those of
    prod_j (x - p_j); row i of G the filter g(p_i) = g0 + g1 p_i + g2 p_i² over prod_{j != i} (p_i - p_j),
    the last row g2; column i of AT the powers of p_i, the last column the leading coefficient."""
    finite = [p for p in points if p is not None]
    t = len(finite) + 1
    BT, G, AT = np.zeros((t, t)), np.zeros((t, 3)), np.zeros((t - 2, t))
    for i, p in enumerate(finite):
        others = [q for q in finite if q != p]
        BT[i, :t - 1] = P.polyfromroots(others)
        G[i] = np.array([1, p, p * p]) / np.prod([p - q for q in others])
        AT[:, i] = [p ** k for k in range(t - 2)]
    BT[-1] = P.polyfromroots(finite)
    G[-1, 2] = AT[-1, -1] = 1
    return BT, G, AT


@pytest.mark.parametrize("variant", VARIANTS)
def test_matrices_come_from_the_interpolation_points(variant):
    BT, G, AT = toom_cook(variant.points)
    if variant.m == 2:
        # Signs of F(2, 3) as eqs. W3 and W4 write it: the denominator -1 of the point 0 goes into the basis
        # 1 - x² (BT's row) rather than into G, and the last product is negated in BT and AT. Each product
        # keeps its value: a row of BT times a row of G, times a column of AT, is unchanged.
        BT[0], G[0] = -BT[0], -G[0]
        BT[-1], AT[:, -1] = -BT[-1], -AT[:, -1]
    np.testing.assert_allclose(variant.BT, BT, rtol=0, atol=1e-15)
    np.testing.assert_allclose(variant.G, G, rtol=0, atol=1e-15)
    np.testing.assert_allclose(variant.AT, AT, rtol=0, atol=1e-15)
    assert variant.tile == variant.m + 2 == len(variant.points)


@pytest.mark.parametrize("variant", VARIANTS)
def test_matrices_compute_the_correlation(variant):
    # 1-D: m outputs of a 3-tap correlation of t inputs (eq. W1); 2-D: an m x m block of a t x t tile (eq. W5)
    rng = np.random.default_rng(0)
    m, t = variant.m, variant.tile
    d, g = rng.standard_normal(t), rng.standard_normal(3)
    direct = np.array([d[a:a + 3] @ g for a in range(m)])
    np.testing.assert_allclose(variant.AT @ ((variant.G @ g) * (variant.BT @ d)), direct, rtol=1e-13, atol=1e-13)
    tile, g2 = rng.standard_normal((t, t)), rng.standard_normal((3, 3))
    direct2 = np.array([[np.sum(tile[a:a + 3, b:b + 3] * g2) for b in range(m)] for a in range(m)])
    U, V = variant.G @ g2 @ variant.G.T, variant.BT @ tile @ variant.BT.T
    np.testing.assert_allclose(variant.AT @ (U * V) @ variant.AT.T, direct2, rtol=1e-13, atol=1e-13)


def test_an_unknown_output_block_is_refused():
    with pytest.raises(ValueError, match=r"implemented for m in \[2, 4\], got m=3"):
        T.winograd_variant(3)


def run_plan(matrix, parts):
    plan = T.transform_plan(matrix)
    outs = [np.full(parts[0].shape, np.nan) for _ in range(len(matrix))]    # NaN: a row left unwritten shows
    scratch = np.full((plan.buffers, *parts[0].shape), np.nan) if plan.buffers else None
    T.apply_transform(plan, parts, outs, scratch)
    return np.stack(outs)


COEFFICIENTS = [0, 0, 0, 1, -1, 2, -2, 4, -4, 5, -5, 8, -8, 0.5, -0.25]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.data())
def test_apply_transform_is_the_matrix_product(rows, cols, data):
    # Any matrix (zero rows, repeated and opposite rows and columns included: what the factorisations look
    # for), against np.tensordot. Small integers and binary fractions keep every sum exact in float64.
    entries = data.draw(st.lists(st.sampled_from(COEFFICIENTS), min_size=rows * cols, max_size=rows * cols))
    matrix = np.array(entries, dtype=np.float64).reshape(rows, cols)
    if data.draw(st.booleans()) and rows >= 2:       # make a ±p pair of rows, as in B^T and A
        even = np.where(np.arange(cols) % 2 == 0, 1.0, 0.0)
        matrix[1] = matrix[0] * even - matrix[0] * (1 - even)
    parts = [np.random.default_rng(k).integers(-8, 9, (3, 4)).astype(np.float64) for k in range(cols)]
    np.testing.assert_array_equal(run_plan(matrix, parts), np.tensordot(matrix, np.stack(parts), 1))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("which", ["BT", "AT", "A"])
def test_plans_of_the_variants(variant, which):
    matrix = {"BT": variant.BT, "AT": variant.AT, "A": variant.AT.T}[which]
    parts = [np.random.default_rng(k).standard_normal((2, 3)) for k in range(matrix.shape[1])]
    want = np.tensordot(matrix, np.stack(parts), 1)
    np.testing.assert_allclose(run_plan(matrix, parts), want, rtol=1e-14, atol=1e-14)
    # eq. W12: the passes of each 1-D transform. F(2, 3): additions only, one per row (its ±1 pairs save
    # nothing); F(4, 3): the paired rows (B^T, A) and columns (A^T) of the points ±1 and ±2.
    expected = {2: {"BT": 4, "AT": 4, "A": 4}, 4: {"BT": 19, "AT": 13, "A": 13}}
    assert len(T.transform_plan(matrix).ops) == expected[variant.m][which]


def rounding_depth(plan, n_parts):
    """The most operations that round (add, subtract, multiply) on any path from a part to an output."""
    depth = {("part", j): 0 for j in range(n_parts)}
    for name, *args in plan.ops:
        *sources, target = args
        deepest = max(depth.get(s, 0) for s in sources if isinstance(s, tuple))
        depth[target] = deepest + (name in ("add", "subtract", "multiply"))
    return max(d for a, d in depth.items() if a[0] == "out")


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_path_rounds_at_most_t_times_per_stage(variant):
    # The rounding bound of tests/test_winograd.py counts t roundings per stage of a transform (2t for
    # B^T d B, A^T M A and A dY A^T): here is where that count comes from.
    t = variant.tile
    for matrix in (variant.BT, variant.AT, variant.AT.T):
        assert rounding_depth(T.transform_plan(matrix), matrix.shape[1]) <= t
