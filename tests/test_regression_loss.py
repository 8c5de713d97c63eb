"""MSELoss and BCEWithLogitsLoss: kernels against finite differences (input AND target), PyTorch and golden files."""
from pathlib import Path

import numpy as np
import pytest

from minigru import backend, nn
from minigru import functional as F
from minigru.gradcheck import numerical_gradient, rel_error

GOLDEN = Path(__file__).parent / "golden" / "convgru_renet.npz"
TOL, EPS, TORCH_TOL = 1e-6, 1e-5, 1e-8
REDUCTIONS = ["mean", "sum", "none"]


def _data(rng, xp, shape, scale=2.0):
    x = xp.asarray(rng.standard_normal(shape) * scale)
    y = xp.asarray(rng.uniform(size=shape))
    return x, y


def _dout(rng, xp, loss):
    return xp.asarray(rng.standard_normal(loss.shape)) if loss.ndim else float(rng.standard_normal())


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1,), (3, 4), (2, 3, 2, 2)], ids=str)
def test_mse_kernel_gradcheck(xp, reduction, shape):
    rng = np.random.default_rng(len(shape))
    x, y = _data(rng, xp, shape)
    loss, cache = F.mse_loss_forward(x, y, reduction)
    dout = _dout(rng, xp, loss)
    dx, dy = F.mse_loss_backward(dout, cache)
    run = lambda _: F.mse_loss_forward(x, y, reduction)[0]  # noqa: E731
    assert rel_error(dx, numerical_gradient(run, x, dout, eps=EPS)) <= TOL
    assert rel_error(dy, numerical_gradient(run, y, dout, eps=EPS)) <= TOL


WEIGHTS = [dict(), dict(weight=(3, 1)), dict(pos_weight=(4,)), dict(weight=(4,), pos_weight=(1,))]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weights", WEIGHTS, ids=str)
def test_bce_with_logits_kernel_gradcheck(xp, reduction, weights):
    rng = np.random.default_rng(3)
    x, y = _data(rng, xp, (2, 3, 4))
    extra = {k: xp.asarray(rng.uniform(0.5, 2.0, size=s)) for k, s in weights.items()}
    loss, cache = F.bce_with_logits_forward(x, y, reduction=reduction, **extra)
    dout = _dout(rng, xp, loss)
    dx, dy = F.bce_with_logits_backward(dout, cache)
    run = lambda _: F.bce_with_logits_forward(x, y, reduction=reduction, **extra)[0]  # noqa: E731
    assert rel_error(dx, numerical_gradient(run, x, dout, eps=EPS)) <= TOL
    assert rel_error(dy, numerical_gradient(run, y, dout, eps=EPS)) <= TOL


def test_bce_with_logits_formula_and_stability():
    x = np.array([-800.0, -30.0, -1.0, 0.0, 2.0, 40.0, 800.0])
    y = np.array([0.0, 1.0, 0.3, 0.5, 1.0, 0.0, 1.0])
    loss, cache = F.bce_with_logits_forward(x, y, reduction="none")
    p = np.array([0.0, 1 / (1 + np.exp(30.0)), 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-2.0)), 1.0, 1.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        naive = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    finite = np.isfinite(naive)                     # where the textbook formula itself does not overflow
    assert np.allclose(loss[finite], naive[finite], rtol=1e-12, atol=1e-12)
    assert np.all(np.isfinite(loss)) and loss[0] == 0 and loss[-1] == 0 and np.isclose(loss[5], 40.0)
    dx, _ = F.bce_with_logits_backward(np.ones(7), cache)
    sigma = np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
    assert np.allclose(dx, sigma - y, rtol=1e-12, atol=1e-15)   # σ(x) − y
    assert loss.dtype == np.float64
    loss32, _ = F.bce_with_logits_forward(x.astype(np.float32), y.astype(np.float32))
    assert loss32.dtype == np.float32 and np.isfinite(loss32)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_losses_match_torch(reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, y = _data(rng, np, (3, 4, 5), 3.0)
    weight, pos_weight = rng.uniform(size=(4, 1)), rng.uniform(0.5, 1.5, size=(5,))
    cases = [(nn.MSELoss(reduction), torch.nn.MSELoss(reduction=reduction)),
             (nn.BCEWithLogitsLoss(reduction=reduction), torch.nn.BCEWithLogitsLoss(reduction=reduction)),
             (nn.BCEWithLogitsLoss(weight, reduction, pos_weight),
              torch.nn.BCEWithLogitsLoss(torch.tensor(weight), reduction=reduction, pos_weight=torch.tensor(pos_weight)))]
    for ours, theirs in cases:
        x_t = torch.tensor(x, requires_grad=True)
        loss_t = theirs(x_t, torch.tensor(y))
        loss = ours(x, y)
        dout = rng.standard_normal(loss.shape)
        loss_t.backward(torch.tensor(dout))
        dx = ours.backward(dout if loss.ndim else float(dout))
        assert rel_error(loss, loss_t.detach().numpy()) <= TORCH_TOL
        assert rel_error(dx, x_t.grad.numpy()) <= TORCH_TOL


@pytest.mark.parametrize("case", [f"{k}_{r}" for k in ("mse", "bce") for r in REDUCTIONS])
def test_losses_match_golden(case):
    with np.load(GOLDEN, allow_pickle=False) as data:
        g = {k[len(case) + 2:]: data[k] for k in data.files if k.startswith(case + "__")}
    reduction = case.split("_", 1)[1]
    if case.startswith("mse"):
        loss, cache = F.mse_loss_forward(g["input"], g["target"], reduction)
        dx, dy = F.mse_loss_backward(g["dout"] if reduction == "none" else g["dout"][()], cache)
    else:
        loss, cache = F.bce_with_logits_forward(g["input"], g["target"], g["weight"], g["pos_weight"], reduction)
        dx, dy = F.bce_with_logits_backward(g["dout"] if reduction == "none" else g["dout"][()], cache)
    for a, b in [(loss, g["loss"]), (dx, g["dinput"]), (dy, g["dtarget"])]:
        assert rel_error(a, b) <= TORCH_TOL


def test_loss_layers_buffers_and_errors():
    criterion = nn.BCEWithLogitsLoss(weight=np.ones((1, 3)), pos_weight=np.full(3, 2.0))
    assert list(criterion.state_dict()) == ["weight", "pos_weight"]
    assert list(nn.BCEWithLogitsLoss().state_dict()) == [] and list(nn.MSELoss().state_dict()) == []
    x, y = np.zeros((2, 3)), np.ones((2, 3))
    assert np.isclose(float(criterion(x, y)), 2 * np.log(2))
    with pytest.raises(ValueError, match="same shape"):
        nn.MSELoss()(x, y[:1])
    with pytest.raises(TypeError, match="floating point"):
        nn.MSELoss()(x, y.astype(np.int64))
    with pytest.raises(TypeError, match="float64 but target is float32"):
        nn.BCEWithLogitsLoss()(x, y.astype(np.float32))
    with pytest.raises(ValueError, match="does not broadcast"):
        nn.BCEWithLogitsLoss(pos_weight=np.ones(2))(x, y)
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(TypeError, match="NumPy or CuPy"):
        nn.MSELoss()([0.0], [1.0])
    loss = nn.MSELoss(reduction="none")
    loss(x, y)
    with pytest.raises(ValueError, match="dout must have shape"):
        loss.backward(1.0)
    with pytest.raises(RuntimeError, match="forward"):
        loss.backward(np.ones((2, 3)))
    assert backend.backend_of(nn.MSELoss()(x, y)) == "numpy"
