"""PyTorch interop: state dicts both ways, export_to_torch / import_from_torch round trips, and the same
function computed on both sides (float64), including the documented recipes for SeedCNN and CNNGRU."""
import collections
import inspect
import sys

import numpy as np
import pytest

from minigru import interop, nn

torch = pytest.importorskip("torch")
TOL = 1e-12


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(np.array_equal(np.asarray(sa[k]), np.asarray(sb[k])) for k in sa)


def _layers():
    """(minigru layer in float64, input) pairs covering every supported class."""
    d = dict(dtype=np.float64)
    rng = np.random.default_rng(0)
    image, flat = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 5))
    seq = rng.standard_normal((4, 2, 3))
    return [
        (nn.Linear(5, 3, rng=0, **d), flat),
        (nn.Linear(5, 3, bias=False, rng=0, **d), flat),
        (nn.Conv2d(3, 4, 3, stride=2, padding=1, rng=0, **d), image),
        (nn.Conv2d(3, 2, (3, 1), padding="same", bias=False, rng=0, **d), image),
        (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=0, **d), nn.BatchNorm2d(4, **d), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(4, 4, 1, rng=1, **d), nn.Tanh(), nn.AvgPool2d(3, stride=1, padding=1),
                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 3, rng=2, **d),
                       nn.Sigmoid(), nn.Identity(), nn.Softmax(dim=1)), image),
        (nn.Sequential(nn.Linear(5, 4, rng=0, **d), nn.BatchNorm1d(4, momentum=None, **d)), flat),
        (nn.BatchNorm2d(3, affine=False, eps=1e-3, **d), image),
        (nn.GRU(3, 4, num_layers=2, bidirectional=True, rng=0, **d), seq),
        (nn.GRU(3, 4, batch_first=True, bias=False, rng=0, **d), seq),
        (nn.LSTM(3, 4, num_layers=2, rng=0, **d), seq),
        (nn.RNN(3, 4, nonlinearity="relu", bidirectional=True, rng=0, **d), seq),
        (nn.GRUCell(3, 4, rng=0, **d), seq[0]),
        (nn.LSTMCell(3, 4, rng=0, **d), seq[0]),
        (nn.RNNCell(3, 4, nonlinearity="relu", rng=0, **d), seq[0]),
    ]


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("index", range(14))
def test_export_computes_the_same_function_and_round_trips(index):
    layer, x = _layers()[index]
    for mode in ("train", "eval"):
        getattr(layer, mode)()
        if mode == "train" and any(isinstance(m, nn.Dropout) for m in layer.modules()):
            continue                                    # random masks differ between the libraries
        twin = interop.export_to_torch(layer)
        assert twin.training == layer.training
        assert all(p.dtype == torch.float64 for p in twin.parameters())
        back = interop.import_from_torch(twin)                  # minigru -> torch -> minigru: identical
        assert type(back) is type(layer) and _same_state(back, layer) and back.training == layer.training
        assert repr(back) == repr(layer)
        with torch.no_grad():
            expected = _first(twin(torch.from_numpy(x))).numpy()
        ours = _first(layer(x))
        assert np.max(np.abs(ours - expected)) <= TOL * max(1.0, np.abs(expected).max())
        # in training mode batch norm updates its running statistics the same way on both sides
        for key, value in interop.to_torch_state_dict(layer).items():
            assert np.allclose(value.numpy(), twin.state_dict()[key].numpy(), rtol=1e-12, atol=1e-14), key


def test_state_dicts_round_trip_exactly():
    layer = nn.Sequential(nn.Conv2d(3, 4, 3, rng=0), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 2, rng=1))
    layer[1].running_mean[...] = np.arange(4)
    state = interop.to_torch_state_dict(layer)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert state["1.num_batches_tracked"].dtype == torch.int64 and state["0.weight"].dtype == torch.float32
    state["0.weight"] += 1                               # a copy: the minigru arrays are untouched
    assert not np.array_equal(layer[0].weight.data, state["0.weight"].numpy())
    other = nn.Sequential(nn.Conv2d(3, 4, 3, rng=5), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 2, rng=6))
    interop.from_torch_state_dict(other, interop.to_torch_state_dict(layer))
    assert _same_state(other, layer)
    twin = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(16, 2))
    twin.load_state_dict(interop.to_torch_state_dict(layer))
    assert interop.load_torch_state_dict is interop.from_torch_state_dict
    with pytest.raises(KeyError, match="unexpected"):
        interop.from_torch_state_dict(nn.Linear(3, 2), {"weight": torch.zeros(2, 3), "bias": torch.zeros(2),
                                                        "extra": torch.zeros(1)})


def test_import_from_torch_keeps_torch_numbers_and_dtype():
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                 torch.nn.Linear(4 * 5 * 5, 3)).eval()
    ours = interop.import_from_torch(theirs)
    assert ours[0].weight.dtype == np.float32 and not ours.training
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    assert np.allclose(ours(x), expected, atol=1e-5)


def test_gru_reset_before_and_unsupported_options_are_clear_errors():
    with pytest.raises(ValueError, match="reset_after=False"):
        interop.export_to_torch(nn.Sequential(nn.GRU(3, 4, reset_after=False)))
    with pytest.raises(ValueError, match="reset_after=False"):
        interop.to_torch_state_dict(nn.GRUCell(3, 4, reset_after=False))
    raw = interop.to_torch_state_dict(nn.GRU(3, 4, reset_after=False), check_conventions=False)
    assert set(raw) == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}
    for module, message in [(torch.nn.Conv2d(3, 4, 3, dilation=2), "dilation=2"),
                            (torch.nn.Conv2d(4, 4, 3, groups=2), "groups=2"),
                            (torch.nn.MaxPool2d(2, ceil_mode=True), "ceil_mode=True"),
                            (torch.nn.AvgPool2d(2, count_include_pad=False), "count_include_pad=False"),
                            (torch.nn.LSTM(3, 4, proj_size=2), "proj_size=2")]:
        with pytest.raises(ValueError, match=message):
            interop.import_from_torch(module)
    with pytest.raises(TypeError, match="no minigru twin"):
        interop.import_from_torch(torch.nn.Conv1d(3, 4, 3))
    with pytest.raises(TypeError, match="ConvGRU has no torch twin"):
        interop.export_to_torch(nn.Sequential(nn.ConvGRU(2, 3, 3)))


def test_losses_export_and_import():
    weight = np.array([1.0, 2.0, 0.5])
    for ours in (nn.CrossEntropyLoss(weight, label_smoothing=0.1), nn.MSELoss(reduction="sum"),
                 nn.BCEWithLogitsLoss(pos_weight=np.array([2.0, 1.0, 1.0]))):
        twin = interop.export_to_torch(ours)
        back = interop.import_from_torch(twin)
        assert type(back) is type(ours) and back.reduction == ours.reduction and _same_state(back, ours)


def test_missing_torch_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install torch"):
        interop.to_torch_state_dict(nn.Linear(2, 2))


def test_model_recipes_from_the_docstring():
    from minigru.models import CNNGRU, SeedCNN
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16))
    seed = SeedCNN(image_size=16, widths=(4, 8), hidden=(6,), rng=0, dtype=np.float64).eval()
    twin = torch.nn.Sequential(collections.OrderedDict(features=interop.export_to_torch(seed.features),
                                                       classifier=interop.export_to_torch(seed.classifier)))
    twin.load_state_dict(interop.to_torch_state_dict(seed))
    with torch.no_grad():
        assert np.max(np.abs(twin(torch.from_numpy(x)).numpy() - seed(x))) < 1e-12

    class TorchCNNGRU(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.features = interop.export_to_torch(m.features)
            self.gru = interop.export_to_torch(m.gru)
            self.fc = interop.export_to_torch(m.fc)

        def forward(self, x):
            f = self.features(x)
            seq = f.permute(3, 0, 1, 2).reshape(f.shape[3], f.shape[0], -1)
            _, h_n = self.gru(seq)
            return self.fc(h_n[-1])

    model = CNNGRU(image_size=16, widths=(4, 8), hidden_size=5, rng=0, dtype=np.float64).eval()
    twin = TorchCNNGRU(model)
    twin.load_state_dict(interop.to_torch_state_dict(model))
    with torch.no_grad():
        assert np.max(np.abs(twin(torch.from_numpy(x)).numpy() - model(x))) < 1e-12


def test_minigru_only_speed_options_export_as_the_same_function():
    if "relu" not in inspect.signature(nn.MaxPool2d.__init__).parameters:
        pytest.skip("this minigru has no fused MaxPool2d(relu=True)")
    layer = nn.Sequential(nn.Conv2d(2, 3, 3, rng=0, dtype=np.float64), nn.MaxPool2d(2, relu=True))
    layer[0].input_grad = False
    twin = interop.export_to_torch(layer)
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6))
    with torch.no_grad():
        assert np.max(np.abs(twin(torch.from_numpy(x)).numpy() - layer(x))) < 1e-12
    assert isinstance(twin[1][1], torch.nn.ReLU)
