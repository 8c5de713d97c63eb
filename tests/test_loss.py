"""CrossEntropyLoss: gradient checks for every reduction/smoothing/weight, torch reference, golden
fixture, hand-worked values, stability and bad-input errors."""
import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest

from minigru import backend, nn
from minigru import functional as F
from minigru.gradcheck import check_module, numerical_gradient, rel_error

GOLDEN = Path(__file__).parent / "golden" / "basic.npz"
TOL = 1e-6
REF_TOL = 1e-8
# A scalar loss of size ~N·log C: with a step of 1e-6 its round-off (1e-16·|loss|/1e-6) swamps the
# smallest gradient entries; 1e-5 is nearer the optimal step (machine eps)^(1/3) for centred differences.
FD_EPS = 1e-5

COMBOS = list(itertools.product(["mean", "sum", "none"], [0.0, 0.2], [False, True]))


def case(rng, N, C):
    return rng.standard_normal((N, C)) * 2, rng.integers(0, C, N), rng.uniform(0.2, 2.0, C)


@pytest.mark.parametrize("reduction, smoothing, weighted", COMBOS)
@pytest.mark.parametrize("N, C", [(1, 3), (4, 5), (7, 2)])
def test_cross_entropy_gradcheck(xp, reduction, smoothing, weighted, N, C):
    logits, targets, weight = case(np.random.default_rng(N * 10 + C), N, C)
    crit = nn.CrossEntropyLoss(weight=weight if weighted else None, reduction=reduction, label_smoothing=smoothing)
    report = check_module(crit, xp.asarray(logits), xp.asarray(targets), eps=FD_EPS, verbose=False)
    assert report.passed, str(report)


def test_cross_entropy_kernel_matches_finite_differences(xp):
    logits, targets, weight = (xp.asarray(a) for a in case(np.random.default_rng(1), 3, 4))
    dout = xp.asarray(np.random.default_rng(2).standard_normal(3))

    def f(_):
        return F.cross_entropy_forward(logits, targets, weight, "none", 0.1)[0]

    _, cache = F.cross_entropy_forward(logits, targets, weight, "none", 0.1)
    assert rel_error(F.cross_entropy_backward(dout, cache), numerical_gradient(f, logits, dout, eps=FD_EPS)) < TOL


@pytest.mark.parametrize("reduction, smoothing, weighted", COMBOS)
def test_cross_entropy_matches_torch(xp, reduction, smoothing, weighted):
    torch = pytest.importorskip("torch")
    logits, targets, weight = case(np.random.default_rng(3), 6, 4)
    targets[:2] = 3                                     # a repeated class
    dout = np.random.default_rng(4).standard_normal(6) if reduction == "none" else np.array(0.7)
    zt = torch.tensor(logits, requires_grad=True)
    lt = torch.nn.CrossEntropyLoss(weight=torch.tensor(weight) if weighted else None, reduction=reduction,
                                   label_smoothing=smoothing)(zt, torch.tensor(targets))
    lt.backward(torch.tensor(dout))
    crit = nn.CrossEntropyLoss(weight=weight if weighted else None, reduction=reduction, label_smoothing=smoothing)
    loss = crit(xp.asarray(logits), xp.asarray(targets))
    dlogits = crit.backward(xp.asarray(dout))
    assert rel_error(loss, lt.detach().numpy()) < REF_TOL
    assert rel_error(dlogits, zt.grad.numpy()) < REF_TOL


@pytest.mark.parametrize("reduction, smoothing, weighted", COMBOS)
def test_cross_entropy_golden(xp, reduction, smoothing, weighted):
    g = np.load(GOLDEN, allow_pickle=False)
    smoothing = 0.15 if smoothing else 0.0                # the fixture's smoothing
    crit = nn.CrossEntropyLoss(weight=g["ce.weight"] if weighted else None, reduction=reduction,
                               label_smoothing=smoothing)
    loss = crit(xp.asarray(g["ce.logits"]), xp.asarray(g["ce.targets"]))
    dlogits = crit.backward(xp.asarray(g["ce.dout_none"]) if reduction == "none" else 1.0)
    key = f"ce.{reduction}.{smoothing}.{int(weighted)}"
    assert rel_error(loss, g[key + ".loss"]) < REF_TOL
    assert rel_error(dlogits, g[key + ".dlogits"]) < REF_TOL


def test_hand_worked_values(xp):
    # two equal logits: p = (½, ½), loss = log 2, dL/dz = p - onehot = (-½, ½)
    crit = nn.CrossEntropyLoss()
    loss = crit(xp.asarray([[0.0, 0.0]]), xp.asarray([0]))
    assert isinstance(loss, xp.ndarray) and loss.shape == ()
    assert abs(float(loss) - np.log(2)) < 1e-15
    np.testing.assert_allclose(backend.to_numpy(crit.backward()), [[-0.5, 0.5]])
    # smoothing ε = 0.5 over C = 2: target (0.75, 0.25); the gradient is p - target = (-0.25, 0.25)
    crit = nn.CrossEntropyLoss(label_smoothing=0.5)
    crit(xp.asarray([[0.0, 0.0]]), xp.asarray([0]))
    np.testing.assert_allclose(backend.to_numpy(crit.backward()), [[-0.25, 0.25]])
    # weighted mean divides by the targets' weights: (2·log 2 + 1·log 2) / (2 + 1) = log 2
    crit = nn.CrossEntropyLoss(weight=np.array([2.0, 1.0]))
    loss = crit(xp.asarray([[0.0, 0.0], [0.0, 0.0]]), xp.asarray([0, 1]))
    assert abs(float(loss) - np.log(2)) < 1e-15


def test_float32_loss_is_0d_float32_and_stable(xp):
    logits = xp.asarray([[1e4, -1e4, 0.0], [-3e4, 0.0, 3e4]], dtype=np.float32)
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = crit(logits, xp.asarray([0, 2]))
        dlogits = crit.backward()
    assert loss.dtype == np.float32 and loss.shape == () and np.isfinite(float(loss))
    assert dlogits.dtype == np.float32 and bool(xp.isfinite(dlogits).all())
    # the predicted classes are right: only the smoothing part costs, (ε/C)·Σ_c -log p_c
    expected = 0.1 / 3 * (2e4 + 1e4 + 3e4 + 6e4) / 2
    assert abs(float(loss) - expected) / expected < 1e-5


def test_weight_is_a_buffer_like_torch():
    torch = pytest.importorskip("torch")
    w = np.array([1.0, 2.0, 0.5], dtype=np.float32)
    ours, theirs = nn.CrossEntropyLoss(weight=w), torch.nn.CrossEntropyLoss(weight=torch.tensor(w))
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    assert nn.CrossEntropyLoss().state_dict() == {}


@pytest.mark.parametrize("logits, targets, error, match", [
    (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), TypeError, "integer class indices"),
    (np.zeros((3, 4)), np.array([0, 1, 4]), ValueError, r"in \[0, 3\] for 4 classes, got values from 0 to 4"),
    (np.zeros((3, 4)), np.array([-1, 1, 2]), ValueError, "got values from -1"),
    (np.zeros((3, 4)), np.array([0, 1]), ValueError, r"targets must have shape \(3,\)"),
    (np.zeros((3, 4)), np.array([[0], [1], [2]]), ValueError, r"targets must have shape \(3,\)"),
    (np.zeros((3, 4, 2)), np.array([0, 1, 2]), ValueError, r"logits must have shape \(N, C\)"),
    (np.zeros((3, 4), dtype=np.int64), np.array([0, 1, 2]), TypeError, "logits must be floating"),
    (np.zeros((0, 4)), np.zeros(0, dtype=np.int64), ValueError, "empty"),
])
def test_bad_inputs(logits, targets, error, match):
    with pytest.raises(error, match=match):
        nn.CrossEntropyLoss()(logits, targets)


def test_bad_arguments_and_dout():
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="1-D floating"):
        nn.CrossEntropyLoss(weight=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        nn.CrossEntropyLoss(weight=np.ones(3))(np.zeros((2, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match="sum to zero"):
        nn.CrossEntropyLoss(weight=np.array([0.0, 1.0]))(np.zeros((2, 2)), np.array([0, 0]))
    with pytest.raises(TypeError, match="must be a NumPy or CuPy array"):
        nn.CrossEntropyLoss()([[0.0, 1.0]], [1])
    crit = nn.CrossEntropyLoss(reduction="none")
    crit(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"dout must have shape \(2,\)"):
        crit.backward(1.0)
    crit = nn.CrossEntropyLoss()
    crit(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="number or 0-d array"):
        crit.backward(np.ones(2))
    with pytest.raises(RuntimeError, match="needs a forward"):
        crit.backward()
