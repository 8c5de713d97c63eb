"""BatchNorm1d/2d: gradient checks (train and eval), torch reference over several steps, golden fixture,
blocked code path, float32 accuracy, state dicts and errors."""
from pathlib import Path

import numpy as np
import pytest

from minigru import backend, nn
from minigru import functional as F
from minigru.functional import batchnorm as bn_kernels
from minigru.gradcheck import check_module, numerical_gradient, rel_error

GOLDEN = Path(__file__).parent / "golden" / "basic.npz"
TOL = 1e-6
REF_TOL = 1e-8


def make_bn(cls, channels, rng, **kwargs):
    """A float64 layer with random γ, β and running statistics (so that nothing is trivially 0 or 1)."""
    layer = cls(channels, dtype=np.float64, **kwargs)
    if layer.affine:
        layer.weight.data[...] = backend.to_backend(rng.uniform(0.5, 1.5, channels))
        layer.bias.data[...] = backend.to_backend(rng.standard_normal(channels))
    if layer.track_running_stats:
        layer.running_mean[...] = backend.to_backend(rng.standard_normal(channels))
        layer.running_var[...] = backend.to_backend(rng.uniform(0.5, 2.0, channels))
    return layer


@pytest.mark.parametrize("cls, shape", [
    # N = 2 with (N, C) input is legal, but x̂ = ±1 there and dx is ~1e-7, below what finite differences
    # resolve; that batch is checked against torch in test_batchnorm_matches_torch_over_steps instead.
    (nn.BatchNorm1d, (3, 2)),
    (nn.BatchNorm1d, (5, 1)),          # one channel
    (nn.BatchNorm1d, (1, 2, 3)),       # batch 1 is legal with L > 1
    (nn.BatchNorm1d, (3, 4, 5)),
    (nn.BatchNorm2d, (1, 2, 2, 3)),    # batch 1, non-square
    (nn.BatchNorm2d, (3, 3, 3, 2)),    # odd sizes
    (nn.BatchNorm2d, (3, 2, 1, 1)),    # 1x1 images
])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batchnorm_gradcheck(xp, cls, shape, mode):
    rng = np.random.default_rng(0)
    layer = make_bn(cls, shape[1], rng)
    layer.train(mode == "train")
    x = xp.asarray(rng.standard_normal(shape) * 2 + 0.5)
    report = check_module(layer, x, verbose=False)
    assert report.passed, str(report)


@pytest.mark.parametrize("kwargs", [dict(affine=False), dict(track_running_stats=False), dict(momentum=None)])
def test_batchnorm_gradcheck_options(xp, kwargs):
    rng = np.random.default_rng(1)
    layer = make_bn(nn.BatchNorm2d, 3, rng, **kwargs)
    x = xp.asarray(rng.standard_normal((2, 3, 2, 3)))
    for mode in (True, False):
        report = check_module(layer.train(mode), x, verbose=False)
        assert report.passed, str(report)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_kernels_match_finite_differences(xp, training):
    rng = np.random.default_rng(2)
    x = xp.asarray(rng.standard_normal((3, 2, 2, 2)))
    gamma, beta = xp.asarray(rng.uniform(0.5, 1.5, 2)), xp.asarray(rng.standard_normal(2))
    rm, rv = xp.asarray(rng.standard_normal(2)), xp.asarray(rng.uniform(0.5, 2, 2))
    dout = xp.asarray(rng.standard_normal((3, 2, 2, 2)))

    def f():
        return F.batchnorm_forward(x, gamma, beta, None if training else rm, None if training else rv,
                                   training=training)[0]

    _, cache = F.batchnorm_forward(x, gamma, beta, None if training else rm, None if training else rv,
                                   training=training)
    grads = F.batchnorm_backward(dout, cache)
    for analytic, arr in zip(grads, (x, gamma, beta)):
        assert rel_error(analytic, numerical_gradient(lambda _: f(), arr, dout)) < TOL


def test_batchnorm_forward_by_hand(xp):
    # one channel, values 1, 2, 3, 6: mean 3, biased variance (4 + 1 + 0 + 9)/4 = 3.5
    x = xp.asarray([[1.0], [2.0], [3.0], [6.0]])
    rm, rv = xp.zeros(1), xp.ones(1)
    out, _ = F.batchnorm_forward(x, None, None, rm, rv, training=True, momentum=0.5, eps=0.0)
    np.testing.assert_allclose(backend.to_numpy(out).ravel(), (np.array([1, 2, 3, 6]) - 3) / np.sqrt(3.5))
    np.testing.assert_allclose(backend.to_numpy(rm), [1.5])                       # 0.5·0 + 0.5·3
    np.testing.assert_allclose(backend.to_numpy(rv), [0.5 + 0.5 * 14 / 3])        # unbiased: 14/3


def torch_twin(torch, layer_cls, channels, **kwargs):
    twin = getattr(torch.nn, layer_cls.__name__)(channels, **kwargs).double()
    rng = np.random.default_rng(3)
    with torch.no_grad():
        if twin.affine:
            twin.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, channels)))
            twin.bias.copy_(torch.tensor(rng.standard_normal(channels)))
    ours = layer_cls(channels, dtype=np.float64, **kwargs)
    ours.load_state_dict({k: v.detach().numpy() for k, v in twin.state_dict().items()})
    return twin, ours


def compare_steps(torch, xp, twin, ours, shapes, seed=4):
    rng = np.random.default_rng(seed)
    for shape in shapes:
        x, dout = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
        xt = torch.tensor(x, requires_grad=True)
        yt = twin(xt)
        yt.backward(torch.tensor(dout))
        out = ours(xp.asarray(x))
        dx = ours.backward(xp.asarray(dout))
        assert rel_error(out, yt.detach().numpy()) < REF_TOL
        assert rel_error(dx, xt.grad.numpy()) < REF_TOL
        if twin.affine:
            assert rel_error(ours.weight.grad, twin.weight.grad.numpy()) < REF_TOL
            assert rel_error(ours.bias.grad, twin.bias.grad.numpy()) < REF_TOL
        for name, buf in twin.named_buffers():
            mine = backend.to_numpy(getattr(ours, name))
            if name == "num_batches_tracked":
                assert mine.dtype == np.int64 and int(mine) == int(buf)
            else:
                assert rel_error(mine, buf.numpy()) < REF_TOL, name


@pytest.mark.parametrize("cls, shapes", [
    (nn.BatchNorm1d, [(8, 3), (5, 3), (2, 3)]),
    (nn.BatchNorm1d, [(4, 3, 5), (1, 3, 7)]),
    (nn.BatchNorm2d, [(4, 3, 5, 6), (2, 3, 3, 3), (1, 3, 4, 2)]),
])
@pytest.mark.parametrize("kwargs", [dict(), dict(momentum=None), dict(momentum=0.3, eps=1e-3),
                                    dict(affine=False), dict(track_running_stats=False)])
def test_batchnorm_matches_torch_over_steps(xp, cls, shapes, kwargs):
    torch = pytest.importorskip("torch")
    twin, ours = torch_twin(torch, cls, shapes[0][1], **kwargs)
    compare_steps(torch, xp, twin, ours, shapes)                 # training: batch stats + running update
    twin.eval()
    ours.eval()
    compare_steps(torch, xp, twin, ours, shapes[:2], seed=5)     # evaluation: running stats (or batch stats)


def test_blocked_passes_match_torch(xp, monkeypatch):
    """Force many small row blocks (and a ragged last one): the blocked arithmetic must not change results."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(bn_kernels, "BLOCK_BYTES", 3 * 4 * 5 * 8 * 2)    # two samples per block
    twin, ours = torch_twin(torch, nn.BatchNorm2d, 4)
    compare_steps(torch, xp, twin, ours, [(7, 4, 3, 5), (5, 4, 3, 5)])
    twin1, ours1 = torch_twin(torch, nn.BatchNorm1d, 6)
    monkeypatch.setattr(bn_kernels, "BLOCK_BYTES", 1)                    # one row per block
    compare_steps(torch, xp, twin1, ours1, [(9, 6), (3, 6)])


@pytest.mark.parametrize("case, cls, channels", [("bn1d", nn.BatchNorm1d, 3), ("bn1d3", nn.BatchNorm1d, 2),
                                                 ("bn2d", nn.BatchNorm2d, 2)])
def test_batchnorm_golden(xp, case, cls, channels):
    g = np.load(GOLDEN, allow_pickle=False)
    layer = cls(channels, dtype=np.float64, momentum=None if case == "bn1d3" else 0.1)
    layer.weight.data[...] = xp.asarray(g[f"{case}.weight"])
    layer.bias.data[...] = xp.asarray(g[f"{case}.bias"])
    for step in ("train0", "train1", "train2", "eval"):
        if step == "eval":
            layer.eval()
        key = f"{case}.{step}."
        layer.zero_grad()
        out = layer(xp.asarray(g[key + "x"]))
        dx = layer.backward(xp.asarray(g[key + "dout"]))
        assert rel_error(out, g[key + "out"]) < REF_TOL
        assert rel_error(dx, g[key + "dx"]) < REF_TOL
        assert rel_error(layer.weight.grad, g[key + "dweight"]) < REF_TOL
        assert rel_error(layer.bias.grad, g[key + "dbias"]) < REF_TOL
        if step != "eval":
            assert rel_error(layer.running_mean, g[key + "running_mean"]) < REF_TOL
            assert rel_error(layer.running_var, g[key + "running_var"]) < REF_TOL


def test_float32_statistics_survive_a_large_mean(xp):
    """Two-pass variance: a mean of 1000 with unit spread must not cancel away the variance in float32."""
    rng = np.random.default_rng(6)
    x64 = rng.standard_normal((16, 3, 8, 8)) + 1000.0
    layer = nn.BatchNorm2d(3, momentum=1.0)        # momentum 1: running_var = this batch's unbiased variance
    out = backend.to_numpy(layer(xp.asarray(x64.astype(np.float32))))
    x32 = x64.astype(np.float32).astype(np.float64)
    var = x32.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(backend.to_numpy(layer.running_var), var, rtol=1e-4)
    expected = (x32 - x32.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(x32.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_state_dict_interchange_with_torch(backend_name):
    torch = pytest.importorskip("torch")
    twin = torch.nn.BatchNorm2d(4)
    twin(torch.randn(3, 4, 2, 2) * 2 + 1)                   # move the running statistics off 0 and 1
    ours = nn.BatchNorm2d(4)
    assert list(ours.state_dict()) == list(twin.state_dict())
    ours.load_state_dict({k: v.detach().numpy() for k, v in twin.state_dict().items()})
    assert backend.backend_of(ours.running_mean) == backend_name
    assert ours.num_batches_tracked.dtype == np.int64 and int(ours.num_batches_tracked) == 1
    x = np.random.default_rng(7).standard_normal((2, 4, 3, 3)).astype(np.float32)
    ours.eval()
    twin.eval()
    with torch.no_grad():
        np.testing.assert_allclose(backend.to_numpy(ours(backend.to_backend(x))), twin(torch.tensor(x)).numpy(),
                                   rtol=1e-5, atol=1e-5)
    back = torch.nn.BatchNorm2d(4)
    back.load_state_dict({k: torch.from_numpy(np.array(backend.to_numpy(v))) for k, v in ours.state_dict().items()})
    for (k, a), (_, b) in zip(back.state_dict().items(), twin.state_dict().items()):
        assert torch.equal(a, b), k
    no_affine = torch.nn.BatchNorm1d(3, affine=False)
    assert list(nn.BatchNorm1d(3, affine=False).state_dict()) == list(no_affine.state_dict())
    assert nn.BatchNorm1d(3, track_running_stats=False).state_dict().keys() == {"weight", "bias"}


def test_reset_running_stats_and_repr():
    layer = nn.BatchNorm1d(2)
    layer(np.random.default_rng(8).standard_normal((4, 2)).astype(np.float32))
    layer.reset_running_stats()
    np.testing.assert_array_equal(layer.running_mean, 0)
    np.testing.assert_array_equal(layer.running_var, 1)
    assert int(layer.num_batches_tracked) == 0
    assert repr(layer) == "BatchNorm1d(2, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"


@pytest.mark.parametrize("layer, x, error, match", [
    (nn.BatchNorm2d(3), np.zeros((2, 3, 4), np.float32), ValueError, r"expected 4D input \(N, C, H, W\), got 3D"),
    (nn.BatchNorm1d(3), np.zeros((2, 3, 4, 4), np.float32), ValueError, "expected 2D or 3D input"),
    (nn.BatchNorm2d(3), np.zeros((2, 5, 5, 3), np.float32), ValueError, "expected 3 channels in dim 1.*channels last"),
    (nn.BatchNorm1d(4), np.zeros((1, 4), np.float32), ValueError,
     "Expected more than 1 value per channel when training"),
    (nn.BatchNorm2d(2), np.zeros((1, 2, 1, 1), np.float32), ValueError, "more than 1 value per channel"),
    (nn.BatchNorm2d(2), np.zeros((2, 2, 2, 2), np.int32), TypeError, "floating-point input"),
    (nn.BatchNorm2d(2), np.zeros((2, 2, 2, 2), np.float64), TypeError, "float32 parameters but got a float64"),
])
def test_batchnorm_bad_input(layer, x, error, match):
    with pytest.raises(error, match=match):
        layer(x)
    if "per channel" in match:
        assert int(layer.num_batches_tracked) == 0           # a rejected batch is not counted


def test_batch_of_one_is_fine_in_eval_and_other_errors():
    layer = nn.BatchNorm1d(4).eval()
    assert layer(np.ones((1, 4), np.float32)).shape == (1, 4)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2d(3, momentum=1.5)
    with pytest.raises(ValueError, match="num_features > 0"):
        nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match="needs running_mean"):
        F.batchnorm_forward(np.ones((2, 3)), None, None, training=False)
    with pytest.raises(ValueError, match="gamma must have shape"):
        F.batchnorm_forward(np.ones((2, 3)), np.ones(2), None)
    _, cache = F.batchnorm_forward(np.ones((2, 3)) * [[1.0], [2.0]], None, None)
    with pytest.raises(ValueError, match="dout must have shape"):
        F.batchnorm_backward(np.ones((3, 2)), cache)
