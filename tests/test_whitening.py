"""PatchWhitening: the patch covariance against an explicit loop, whitened patches with identity covariance
(eq. WH2), fixed filters (no parameters, saved as buffers), input gradient by finite differences and against
torch, and errors."""
import numpy as np
import pytest

from minigru import backend, nn, optim
from minigru.gradcheck import check_module, rel_error
from minigru.nn.whitening import patch_covariance


def correlated_images(rng, n=40, c=3, size=12):
    """Images whose neighbouring pixels and channels are correlated, as in photographs."""
    x = rng.standard_normal((n, c, size + 2, size + 2))
    x = (x[:, :, :-2, :-2] + x[:, :, 1:-1, 1:-1] + x[:, :, 2:, 2:] + 0.5 * x[:, :, 1:-1, :-2])   # spatial blur
    mix = np.array([[1.0, 0.6, 0.3], [0.2, 1.0, 0.5], [0.1, 0.4, 1.0]])[:c, :c]
    return np.einsum("dc,nchw->ndhw", mix, x) + 0.3


def loop_patches(x, kh, kw):
    """(N·Ho·Wo, C·kh·kw) patches by slicing, in the order (c, i, j): independent of im2col."""
    n, c, h, w = x.shape
    return np.stack([x[m, :, a:a + kh, b:b + kw].reshape(-1)
                     for m in range(n) for a in range(h - kh + 1) for b in range(w - kw + 1)])


@pytest.mark.parametrize("kernel_size", [2, 3, (2, 3)])
def test_patch_covariance_matches_a_loop(xp, kernel_size):
    x = correlated_images(np.random.default_rng(0), n=5, size=7)
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    expected = np.cov(loop_patches(x, kh, kw), rowvar=False, bias=True)
    assert rel_error(patch_covariance(xp.asarray(x), kernel_size), expected) < 1e-12
    assert rel_error(patch_covariance(xp.asarray(x), kernel_size, chunk=2), expected) < 1e-12   # in pieces


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_whitened_patches_have_identity_covariance(xp, kernel_size):
    rng = np.random.default_rng(1)
    x = correlated_images(rng)
    layer = nn.PatchWhitening(3, kernel_size, eps=1e-9, dtype=np.float64).fit(xp.asarray(x))
    out = backend.to_numpy(layer(xp.asarray(x)))
    d = 3 * kernel_size ** 2
    assert out.shape == (40, 2 * d, 12 - kernel_size + 1, 12 - kernel_size + 1)
    features = out.transpose(0, 2, 3, 1).reshape(-1, 2 * d)
    np.testing.assert_allclose(features[:, d:], -features[:, :d])          # the negated copies
    cov = np.cov(features[:, :d], rowvar=False, bias=True)
    np.testing.assert_allclose(cov, np.eye(d), atol=1e-6)
    # the raw patches were far from white, so the check above is not trivially true
    raw = np.cov(loop_patches(x, kernel_size, kernel_size), rowvar=False, bias=True)
    assert np.abs(raw - np.diag(np.diag(raw))).max() > 0.5
    # on new images of the same kind the whitening holds approximately
    fresh = backend.to_numpy(layer(xp.asarray(correlated_images(rng, n=200))))
    cov_fresh = np.cov(fresh[:, :d].transpose(0, 2, 3, 1).reshape(-1, d), rowvar=False, bias=True)
    np.testing.assert_allclose(cov_fresh, np.eye(d), atol=0.15)


def test_eps_shrinks_each_direction_by_lambda_over_lambda_plus_eps():
    # eq. WH2: Cov(Wp) = Λ (Λ + ε)^{-1}, diagonal, in order of decreasing eigenvalue
    x = correlated_images(np.random.default_rng(2))
    eps = 0.05
    layer = nn.PatchWhitening(3, 2, eps=eps, negate=False, dtype=np.float64).fit(x)
    out = layer(x)
    cov = np.cov(out.transpose(0, 2, 3, 1).reshape(-1, 12), rowvar=False, bias=True)
    lam = np.sort(np.linalg.eigvalsh(np.cov(loop_patches(x, 2, 2), rowvar=False, bias=True)))[::-1]
    np.testing.assert_allclose(cov, np.diag(lam / (lam + eps)), atol=1e-10)


def test_filters_are_fixed_buffers():
    x = correlated_images(np.random.default_rng(3), n=6, size=8).astype(np.float32)
    model = nn.Sequential(nn.PatchWhitening(3, 2), nn.ReLU(), nn.Conv2d(24, 4, 3, rng=0))
    model[0].fit(x)
    assert [n for n, _ in model.named_parameters()] == ["2.weight", "2.bias"]
    assert {"0.weight", "0.fitted"} <= set(model.state_dict())
    filters = model[0].weight.copy()
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        opt.zero_grad()
        out = model(x)
        model.backward(np.ones_like(out))
        opt.step()
    np.testing.assert_array_equal(model[0].weight, filters)
    fresh = nn.PatchWhitening(3, 2)
    fresh.load_state_dict(model[0].state_dict())
    np.testing.assert_array_equal(fresh(x), model[0](x))


@pytest.mark.parametrize("padding", [0, 1])
def test_input_gradient_gradcheck(xp, padding):
    x = correlated_images(np.random.default_rng(4), n=2, size=5)
    layer = nn.PatchWhitening(3, 2, padding=padding, dtype=np.float64).fit(xp.asarray(x))
    report = check_module(layer, xp.asarray(x), verbose=False)
    assert report.passed, str(report)


def test_matches_torch_conv_with_the_same_filters():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = correlated_images(rng, n=3, size=6)
    layer = nn.PatchWhitening(3, 3, padding=1, dtype=np.float64).fit(x)
    dout = rng.standard_normal((3, 54, 6, 6))
    xt = torch.tensor(x, requires_grad=True)
    out_t = torch.nn.functional.conv2d(xt, torch.tensor(layer.weight), padding=1)
    out_t.backward(torch.tensor(dout))
    assert rel_error(layer(x), out_t.detach().numpy()) < 1e-10
    assert rel_error(layer.backward(dout), xt.grad.numpy()) < 1e-10


def test_errors():
    with pytest.raises(RuntimeError, match=r"call \.fit"):
        nn.PatchWhitening(3, 2)(np.zeros((1, 3, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="eps must be positive"):
        nn.PatchWhitening(3, 2, eps=0)
    with pytest.raises(ValueError, match="no 3x3 patches"):
        nn.PatchWhitening(3, 3).fit(np.zeros((1, 3, 2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        nn.PatchWhitening(3, 2).fit(np.zeros((1, 1, 4, 4), dtype=np.float32))
