"""Interpretability helpers: recorded gates against a hand-written GRU step and the layers' own outputs,
saliency against finite differences, filter scaling, PCA against an eigen-decomposition, plots."""
import numpy as np
import pytest

from minigru import interpret, nn
from minigru.gradcheck import numerical_gradient, rel_error
from minigru.models import CNNGRU

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def manual_gru_gates(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after):
    """r, z, n, h of every step from the textbook equations (eqs. G3-G7), separate gate blocks."""
    H = w_hh.shape[1]
    h, out = h0, {k: [] for k in "rznh"}
    for x_t in x:
        gx, gh = x_t @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        r = _sigmoid(gx[:, :H] + gh[:, :H])
        z = _sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
        if reset_after:
            n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
        else:
            n = np.tanh(gx[:, 2 * H:] + (r * h) @ w_hh[2 * H:].T + b_hh[2 * H:])
        h = (1 - z) * n + z * h
        for k, v in zip("rznh", (r, z, n, h)):
            out[k].append(v)
    return {k: np.stack(v) for k, v in out.items()}


@pytest.mark.parametrize("reset_after", [True, False])
def test_recorded_gates_match_a_manual_step_computation(reset_after):
    gru = nn.GRU(3, 4, num_layers=2, bidirectional=True, reset_after=reset_after, rng=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    x, h0 = rng.standard_normal((5, 2, 3)), rng.standard_normal((4, 2, 4))
    records = interpret.record_gru_gates(gru, x, h0)
    assert list(records) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    p = {k: v for k, v in gru.state_dict().items()}
    forward = manual_gru_gates(x, h0[0], p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"],
                               reset_after)
    backward = manual_gru_gates(x[::-1], h0[1], p["weight_ih_l0_reverse"], p["weight_hh_l0_reverse"],
                                p["bias_ih_l0_reverse"], p["bias_hh_l0_reverse"], reset_after)
    for k in "rznh":
        assert rel_error(getattr(records["l0"], k), forward[k]) < 1e-10
        assert rel_error(getattr(records["l0_reverse"], k), backward[k][::-1]) < 1e-10   # stored by input step
    out, h_n = gru(x, h0)
    assert rel_error(np.concatenate([records["l1"].h, records["l1_reverse"].h], axis=2), out) < 1e-12
    assert rel_error(records["l1"].h[-1], h_n[2]) < 1e-12 and rel_error(records["l1_reverse"].h[0], h_n[3]) < 1e-12
    assert all(isinstance(v, np.ndarray) and v.shape == (5, 2, 4) for r in records.values() for v in r)


def test_recorded_gates_batch_first_unbatched_and_models():
    rng = np.random.default_rng(1)
    gru = nn.GRU(3, 4, batch_first=True, rng=0, dtype=np.float64)
    x = rng.standard_normal((2, 5, 3))
    record = interpret.record_gru_gates(gru, x)["l0"]
    assert record.h.shape == (5, 2, 4) and rel_error(record.h.transpose(1, 0, 2), gru(x)[0]) < 1e-12
    assert interpret.record_gru_gates(nn.GRU(3, 4, rng=0), x[0].astype(np.float32))["l0"].z.shape == (5, 1, 4)
    model = CNNGRU(image_size=16, widths=(4, 8), hidden_size=6, dropout=0.5, rng=0, dtype=np.float64).train()
    images = rng.standard_normal((2, 3, 16, 16))
    records = interpret.record_gru_gates(model, images)
    assert list(records) == ["gru.l0"] and model.training and "forward" not in model.gru.__dict__
    model.eval()
    with nn.no_grad():
        direct = interpret.record_gru_gates(model.gru, model.to_sequence(model.features(images)))["l0"]
    assert np.array_equal(records["gru.l0"].r, direct.r)
    with pytest.raises(TypeError, match="contains no GRU"):
        interpret.record_gru_gates(nn.Sequential(nn.Linear(3, 2)), x)


def test_recorded_convgru_gates_match_the_layer():
    layer = nn.ConvGRU(2, 3, 3, num_layers=2, input_stride=2, rng=0, dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((4, 2, 2, 6, 5))
    out, _ = layer(x)
    records = interpret.record_gru_gates(layer, x)
    assert records["l0"].r.shape == (4, 2, 3, 3, 3)
    assert rel_error(records["l1"].h, out) < 1e-12
    first = records["l0"]
    h1 = (1 - first.z[0]) * first.n[0]                               # h0 = 0: eq. CG5
    assert rel_error(first.h[0], h1) < 1e-12
    fig = interpret.plot_gates(records["l0"], sample=1)
    assert isinstance(fig, matplotlib.figure.Figure)
    matplotlib.pyplot.close(fig)


def _tiny_classifier():
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=0), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 2 * 3, 4, rng=1), nn.Dropout(0.5)).double()


def test_saliency_equals_finite_differences_of_the_class_score():
    model = _tiny_classifier().train()
    images = np.random.default_rng(3).standard_normal((2, 2, 4, 6))
    before = [p.grad.copy() for p in model.parameters()]
    saliency = interpret.saliency_map(model, images, target_class=[1, 3])
    assert model.training and all(np.array_equal(p.grad, g) for p, g in zip(model.parameters(), before))
    model.eval()
    pick = np.zeros((2, 4))
    pick[[0, 1], [1, 3]] = 1                                          # the two chosen class scores
    grad = numerical_gradient(lambda _: model(images), images, pick, eps=1e-6)
    assert saliency.shape == (2, 4, 6)
    assert rel_error(saliency, np.abs(grad).max(axis=1)) < 1e-7
    model[0].input_grad = False                # a first conv that skips its input gradient (to save time)
    assert rel_error(interpret.saliency_map(model, images, target_class=[1, 3]), saliency) == 0
    assert model[0].input_grad is False
    predicted = model(images).argmax(axis=1)
    assert np.array_equal(interpret.saliency_map(model, images), interpret.saliency_map(model, images, predicted))
    with pytest.raises(ValueError, match="target_class"):
        interpret.saliency_map(model, images, target_class=7)
    with nn.no_grad(), pytest.raises(RuntimeError, match="outside"):
        interpret.saliency_map(model, images)


def test_conv_filters_are_scaled_per_filter():
    conv = nn.Conv2d(3, 4, 3, rng=0)
    conv.weight.data[2] = 0.7                                         # a constant filter
    filters = interpret.conv_filters(conv)
    w = conv.weight.data.astype(np.float64)
    k = 1
    assert np.allclose(filters[k], (w[k] - w[k].min()) / (w[k].max() - w[k].min()))
    assert filters.min() == 0 and filters.max() == 1 and np.all(filters[2] == 0.5)


def test_hidden_state_trajectory_is_pca():
    rng = np.random.default_rng(4)
    states = rng.standard_normal((6, 3, 5)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.1])
    traj = interpret.hidden_state_trajectory(states)
    flat = states.reshape(-1, 5)
    centred = flat - flat.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)  # independent: the covariance's eigenvectors
    top = eigenvectors[:, ::-1][:, :2].T
    assert np.allclose(np.abs(traj.components @ top.T), np.eye(2), atol=1e-10)
    assert np.allclose(traj.explained_variance_ratio, eigenvalues[::-1][:2] / eigenvalues.sum())
    assert traj.points.shape == (6, 3, 2)
    assert np.allclose(traj.points.reshape(-1, 2), centred @ traj.components.T)
    single = interpret.hidden_state_trajectory(states[:, 0], n_components=3)
    assert single.points.shape == (6, 1, 3)
    with pytest.raises(ValueError, match="n_components"):
        interpret.hidden_state_trajectory(states, n_components=9)


def test_plots_return_figures_and_write_files(tmp_path):
    rng = np.random.default_rng(5)
    model = _tiny_classifier()
    images = rng.standard_normal((3, 2, 4, 6))
    saliency = interpret.saliency_map(model, images)
    gru = nn.GRU(3, 4, rng=0)
    record = interpret.record_gru_gates(gru, rng.standard_normal((5, 2, 3)).astype(np.float32))["l0"]
    rgb = nn.Conv2d(3, 5, 3, rng=0)
    figures = [interpret.plot_filters(model[0]), interpret.plot_filters(rgb, ncols=2, title="filters"),
               interpret.plot_filters(model[0], channel=1), interpret.plot_gates(record, gates=("z", "h")),
               interpret.plot_saliency(images, saliency), interpret.plot_trajectory(interpret.hidden_state_trajectory(record))]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figures)
    for f in figures:
        matplotlib.pyplot.close(f)
    path = tmp_path / "gates.png"
    fig = interpret.plot_gates(record, path=path)
    assert path.stat().st_size > 0 and isinstance(fig, matplotlib.figure.Figure)
    with pytest.raises(TypeError, match="GateRecord"):
        interpret.plot_gates({"l0": record})
