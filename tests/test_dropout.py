"""Dropout: fixed-mask values, gradient checks, golden fixture, modes, edge cases, statistics, errors."""
from pathlib import Path

import numpy as np
import pytest

from minigru import backend, nn
from minigru import functional as F
from minigru.gradcheck import check_module, numerical_gradient, rel_error

GOLDEN = Path(__file__).parent / "golden" / "basic.npz"


def test_fixed_mask_by_hand(xp):
    x = xp.asarray([[1.0, 2.0, 3.0, 4.0]])
    keep = xp.asarray([[True, False, True, False]])
    out, cache = F.dropout_forward(x, 0.5, keep)
    np.testing.assert_array_equal(backend.to_numpy(out), [[2.0, 0.0, 6.0, 0.0]])       # kept ones doubled
    dx = F.dropout_backward(xp.asarray([[1.0, 1.0, 1.0, 1.0]]), cache)
    np.testing.assert_array_equal(backend.to_numpy(dx), [[2.0, 0.0, 2.0, 0.0]])
    out01, _ = F.dropout_forward(x, 0.5, xp.asarray([[1, 0, 1, 0]]))                    # a 0/1 mask works too
    np.testing.assert_array_equal(backend.to_numpy(out01), backend.to_numpy(out))


def test_fixed_mask_kernel_gradcheck(xp):
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((3, 5)))
    keep = xp.asarray(rng.random((3, 5)) >= 0.3)
    dout = xp.asarray(rng.standard_normal((3, 5)))
    _, cache = F.dropout_forward(x, 0.3, keep)
    numeric = numerical_gradient(lambda _: F.dropout_forward(x, 0.3, keep)[0], x, dout)
    assert rel_error(F.dropout_backward(dout, cache), numeric) < 1e-6


@pytest.mark.parametrize("shape, p", [((1, 4), 0.5), ((3, 5), 0.2), ((2, 3, 4), 0.7), ((5,), 0.0), ((2, 2), 1.0)])
def test_dropout_layer_gradcheck(xp, shape, p):
    layer = nn.Dropout(p, rng=3)          # check_module replays layer.rng: the same mask every evaluation
    x = xp.asarray(np.random.default_rng(1).standard_normal(shape))
    report = check_module(layer, x, verbose=False)
    assert report.passed, str(report)


def test_dropout_golden(xp):
    g = np.load(GOLDEN, allow_pickle=False)
    out, cache = F.dropout_forward(xp.asarray(g["dropout.x"]), 0.4, xp.asarray(g["dropout.keep"]))
    assert rel_error(out, g["dropout.out"]) < 1e-12
    assert rel_error(F.dropout_backward(xp.asarray(g["dropout.dout"]), cache), g["dropout.dx"]) < 1e-12


def test_eval_mode_and_p0_are_identity(xp):
    x = xp.asarray(np.random.default_rng(2).standard_normal((4, 4)).astype(np.float32))
    layer = nn.Dropout(0.5, rng=0).eval()
    assert layer(x) is x
    assert layer.backward(x) is x
    zero = nn.Dropout(0.0, rng=0)
    assert zero(x) is x and zero.backward(x) is x


def test_p1_drops_everything_like_torch(xp):
    x = xp.ones((3, 4), dtype=np.float32)
    layer = nn.Dropout(1.0, rng=0)
    out = layer(x)
    dx = layer.backward(xp.ones_like(x))
    assert not backend.to_numpy(out).any() and not backend.to_numpy(dx).any()
    torch = pytest.importorskip("torch")
    assert not torch.nn.Dropout(1.0)(torch.ones(3, 4)).any()


def test_mask_statistics_and_scaling(backend_name):
    xp = backend.get_xp(backend_name)
    p, n = 0.3, 200_000
    layer = nn.Dropout(p, rng=4)
    out = backend.to_numpy(layer(xp.ones(n, dtype=np.float32)))
    kept = out != 0
    # Binomial(n, 0.7): the standard deviation of the kept fraction is 0.001; allow 5 of them.
    assert abs(kept.mean() - (1 - p)) < 5e-3
    np.testing.assert_allclose(out[kept], 1 / (1 - p), rtol=1e-6)
    assert abs(out.mean() - 1.0) < 1e-2                      # inverted dropout keeps the mean (eq. D2)


def test_seed_gives_the_same_masks_and_generator_is_kept():
    x = np.ones((8, 8), dtype=np.float32)
    a, b = nn.Dropout(0.5, rng=11), nn.Dropout(0.5, rng=11)
    assert isinstance(a.rng, np.random.Generator)
    first = a(x)
    np.testing.assert_array_equal(first, b(x))
    assert not np.array_equal(first, a(x))                    # the stream moves on
    gen = np.random.default_rng(5)
    assert nn.Dropout(0.5, rng=gen).rng is gen


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5", None, True])
def test_bad_probability(p):
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        nn.Dropout(p)


def test_bad_masks_and_inputs():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="mask must have the shape of x"):
        F.dropout_forward(x, 0.5, np.ones((3, 2), dtype=bool))
    with pytest.raises(ValueError, match="only 0/1"):
        F.dropout_forward(x, 0.5, np.full((2, 3), 2.0))
    with pytest.raises(TypeError, match="floating"):
        nn.Dropout(0.5)(np.ones((2, 3), dtype=np.int64))
    _, cache = F.dropout_forward(x, 0.5, np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="dout must have shape"):
        F.dropout_backward(np.ones((3, 2)), cache)


def test_dropout_has_no_state_dict_and_torch_repr():
    layer = nn.Dropout(0.25)
    assert layer.state_dict() == {} and repr(layer) == "Dropout(p=0.25, inplace=False)"
