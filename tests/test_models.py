"""Models (SeedCNN, CNNGRU, RowGRU), their blocks and the registry: shapes, whole-model gradient checks,
the image-to-sequence reshape, torch twins (live and golden) and a short training run."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from minigru import backend, nn
from minigru.data import make_shapes
from minigru.gradcheck import check_module, rel_error
from minigru.models import CNNGRU, CNNGRU_PRESETS, ImageToSequence, RowGRU, SeedCNN
from minigru.models.registry import MODELS, build_model, default_recipe, get_spec, model_names
from minigru.optim import SGD

GOLDEN = Path(__file__).parent / "golden" / "models.npz"
TOL = 1e-6        # gradient checks (max relative error)
EPS = 1e-5        # finite-difference step
REF_TOL = 1e-8    # agreement with torch in float64
F64 = np.float64


def images(xp, rng, n, c, h, w):
    return xp.asarray(rng.standard_normal((n, c, h, w)))


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("name", ["seed-cnn", "cnn-gru", "cnn-gru-bn", "row-gru"])
def test_registered_models_map_cifar_images_to_logits_and_back(xp, name):
    model = build_model(name, rng=0)
    x = xp.asarray(np.random.default_rng(0).standard_normal((2, 3, 32, 32)), dtype=np.float32)
    logits = model(x)
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    dx = model.backward(xp.ones_like(logits))
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert all(p.grad.shape == p.shape for p in model.parameters())


def test_cnn_gru_sequence_follows_the_feature_map_columns(xp):
    model = CNNGRU(widths=(8, 16), image_size=(16, 24), hidden_size=6, rng=0)
    assert model.sequence_length == 24 // 4
    assert model.gru.input_size == 16 * (16 // 4)          # C' * H' features per column
    assert model(xp.zeros((3, 3, 16, 24), dtype=np.float32)).shape == (3, 10)


def test_parameter_counts_match_the_architecture():
    # SeedCNN: convs 3->32->64->128 (3x3, with bias), FC 2048-1024-512-10
    convs = sum(k * c * 9 + k for c, k in ((3, 32), (32, 64), (64, 128)))
    fcs = 2048 * 1024 + 1024 + 1024 * 512 + 512 + 512 * 10 + 10
    assert SeedCNN(rng=0).num_parameters() == convs + fcs
    # CNNGRU default: same convs, GRU(512 -> 128), Linear(128, 10)
    gru = 3 * 128 * (512 + 128) + 2 * 3 * 128
    assert CNNGRU(rng=0).num_parameters() == convs + gru + 128 * 10 + 10
    # RowGRU: GRU(96 -> 128), Linear(128, 10)
    assert RowGRU(rng=0).num_parameters() == 3 * 128 * (96 + 128) + 2 * 3 * 128 + 128 * 10 + 10


def test_batch_norm_convolutions_have_no_bias():
    model = CNNGRU(widths=(4, 8), batch_norm=True, convs_per_block=(1, 2), rng=0)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(norms) == 3 and all(c.bias is None for c in convs)


# ------------------------------------------------------------------ gradient checks of whole models
TINY_MODELS = {
    "seed_cnn": lambda r: (SeedCNN(num_classes=3, in_channels=2, image_size=4, widths=(2, 3), hidden=(4,),
                                   rng=r, dtype=F64), (2, 2, 4, 4)),
    "seed_cnn_bn_dropout": lambda r: (SeedCNN(num_classes=3, in_channels=1, image_size=(4, 2), widths=(2,),
                                              hidden=(3, 3), batch_norm=True, dropout=0.4, rng=r, dtype=F64),
                                      (3, 1, 4, 2)),
    "cnngru_plain": lambda r: (CNNGRU(num_classes=3, in_channels=2, image_size=4, widths=(2,), hidden_size=3,
                                      rng=r, dtype=F64), (2, 2, 4, 4)),
    "cnngru_bn_bidirectional": lambda r: (CNNGRU(num_classes=3, in_channels=2, image_size=(4, 8), widths=(2, 3),
                                                 batch_norm=True, hidden_size=3, bidirectional=True,
                                                 rng=r, dtype=F64), (3, 2, 4, 8)),
    "cnngru_two_layers_mean_dropout": lambda r: (CNNGRU(num_classes=2, in_channels=1, image_size=(2, 6),
                                                        widths=(2,), convs_per_block=2, hidden_size=2,
                                                        num_layers=2, readout="mean", dropout=0.3, rng=r,
                                                        dtype=F64), (2, 1, 2, 6)),
    "cnngru_reset_before": lambda r: (CNNGRU(num_classes=2, in_channels=1, image_size=4, widths=(2,),
                                             hidden_size=3, reset_after=False, rng=r, dtype=F64), (2, 1, 4, 4)),
    "cnngru_batch_of_one": lambda r: (CNNGRU(num_classes=2, in_channels=1, image_size=(2, 4), widths=(2,),
                                             hidden_size=2, bidirectional=True, rng=r, dtype=F64), (1, 1, 2, 4)),
    "row_gru": lambda r: (RowGRU(num_classes=3, in_channels=2, image_size=(3, 4), hidden_size=3,
                                 rng=r, dtype=F64), (2, 2, 3, 4)),
    "row_gru_bidirectional_two_layers": lambda r: (RowGRU(num_classes=2, in_channels=1, image_size=(4, 2),
                                                          hidden_size=2, num_layers=2, bidirectional=True,
                                                          rng=r, dtype=F64), (2, 1, 4, 2)),
    "row_gru_one_row": lambda r: (RowGRU(num_classes=2, in_channels=1, image_size=(1, 3), hidden_size=2,
                                         readout="mean", rng=r, dtype=F64), (2, 1, 1, 3)),
}


@pytest.mark.parametrize("case", list(TINY_MODELS))
def test_whole_model_gradcheck(xp, case):
    rng = np.random.default_rng(3)
    model, shape = TINY_MODELS[case](rng)
    x = images(xp, rng, *shape)
    report = check_module(model, x, eps=EPS, verbose=False)
    assert report.passed, str(report)
    assert report[0].name == "input[0]"     # the input-image gradient (saliency) is checked too
    assert len(report) == 1 + len(list(model.parameters()))


# ------------------------------------------------------------------ the reshape between CNN and GRU
@pytest.mark.parametrize("along", ["columns", "rows"])
def test_image_to_sequence_matches_its_definition(xp, along):
    rng = np.random.default_rng(4)
    N, C, H, W = 2, 3, 4, 5
    x_host = rng.standard_normal((N, C, H, W))
    seq = backend.to_numpy(ImageToSequence(along)(xp.asarray(x_host)))
    steps, other = (W, H) if along == "columns" else (H, W)
    assert seq.shape == (steps, N, C * other)
    for t in range(steps):
        for n in range(N):
            for c in range(C):
                for k in range(other):
                    pixel = x_host[n, c, k, t] if along == "columns" else x_host[n, c, t, k]
                    assert seq[t, n, c * other + k] == pixel


@pytest.mark.parametrize("along", ["columns", "rows"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 3), (3, 2, 5, 1)])
def test_image_to_sequence_backward_is_the_adjoint(xp, along, shape):
    rng = np.random.default_rng(5)
    layer = ImageToSequence(along)
    x = xp.asarray(rng.standard_normal(shape))
    seq = layer(x)
    d = xp.asarray(rng.standard_normal(seq.shape))
    dx = layer.backward(d)
    # <seq(x), d> = <x, seq^T(d)> for a linear map; and the finite-difference check
    assert abs(float((seq * d).sum()) - float((x * dx).sum())) < 1e-12 * (1 + abs(float((seq * d).sum())))
    assert check_module(layer, x, eps=EPS, verbose=False).passed


def test_image_to_sequence_errors(xp):
    with pytest.raises(ValueError, match="along must be"):
        ImageToSequence("diagonal")
    layer = ImageToSequence()
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        layer(xp.zeros((3, 4, 5)))
    layer(xp.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="dout must have the output's shape"):
        layer.backward(xp.zeros((5, 2, 11)))


# ------------------------------------------------------------------ torch twins
def _twin_module():
    spec = importlib.util.spec_from_file_location("make_models", Path(__file__).parent / "golden" / "make_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", ["cnngru_bn_bidirectional", "cnngru_plain", "cnngru_two_layers_mean_dropout",
                                  "seed_cnn_bn_dropout", "row_gru_bidirectional_two_layers"])
def test_models_match_torch_twins(case):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    model, shape = TINY_MODELS[case](rng)
    model.eval() if "dropout" in case else model.train()   # dropout masks differ from torch's: compare in eval
    twin = _twin_module().torch_twin(model)
    x = rng.standard_normal(shape)
    dlogits = rng.standard_normal((shape[0], model.fc.out_features if hasattr(model, "fc")
                                   else model.classifier[-1].out_features))
    xt = torch.tensor(x, requires_grad=True)
    logits_t = twin(xt)
    logits_t.backward(torch.tensor(dlogits))
    logits = model(x)
    dx = model.backward(dlogits)
    assert rel_error(logits, logits_t.detach().numpy()) <= REF_TOL
    assert rel_error(dx, xt.grad.numpy()) <= REF_TOL
    torch_grads = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        assert rel_error(p.grad, torch_grads[name].grad.numpy()) <= REF_TOL, name


def _golden_cases():
    with np.load(GOLDEN, allow_pickle=False) as data:
        names = sorted({key.split(".")[0] for key in data.files})
        return [(name, {key[len(name) + 1:]: data[key] for key in data.files if key.startswith(name + ".")})
                for name in names]


@pytest.mark.parametrize("name, arrays", _golden_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_models_match_golden_torch_numbers(xp, name, arrays):
    config = json.loads(str(arrays["config"]))
    cls = {"CNNGRU": CNNGRU, "SeedCNN": SeedCNN, "RowGRU": RowGRU}[config["class"]]
    model = cls(**config["args"], rng=0, dtype=F64)
    model.load_state_dict({k[len("state."):]: xp.asarray(v) for k, v in arrays.items() if k.startswith("state.")})
    logits = model(xp.asarray(arrays["x"]))
    dx = model.backward(xp.asarray(arrays["dlogits"]))
    assert rel_error(logits, arrays["logits"]) <= REF_TOL
    assert rel_error(dx, arrays["dx"]) <= REF_TOL
    for pname, p in model.named_parameters():
        assert rel_error(p.grad, arrays["grad." + pname]) <= REF_TOL, pname
    buffers = dict(model.named_buffers())
    running = [k for k in arrays if k.startswith("running.")]
    assert bool(running) == bool(config["args"].get("batch_norm"))
    for key in running:
        assert rel_error(buffers[key[len("running."):]], arrays[key]) <= REF_TOL, key


# ------------------------------------------------------------------ training
def test_a_few_training_steps_lower_the_loss():
    data = make_shapes(64, image_size=16, seed=0, n_classes=4)
    x = data.train_images.astype(np.float32) / 255.0 - 0.5
    y = data.train_labels
    model = CNNGRU(num_classes=4, image_size=16, widths=(8, 16), batch_norm=True, hidden_size=16,
                   bidirectional=True, rng=0)
    loss_fn = nn.CrossEntropyLoss()
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        losses.append(float(loss_fn(model(x), y)))
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < 0.6 * losses[0], losses


# ------------------------------------------------------------------ registry, presets, configs
def test_registry_names_and_recipes():
    assert model_names()[:4] == ["seed-cnn", "cnn-gru", "cnn-gru-bn", "row-gru"]
    assert list(MODELS) == model_names()
    for name in model_names():
        recipe = default_recipe(name)
        assert recipe["epochs"] >= 1 and recipe["batch_size"] >= 2 and recipe["lr"] > 0
        recipe["epochs"] = -1
        assert default_recipe(name)["epochs"] >= 1          # a copy: the registry is unchanged
    assert get_spec("cnn-gru-bn").builder is CNNGRU


def test_build_model_overrides_and_errors():
    model = build_model("row-gru", hidden_size=7, rng=0)
    assert model.gru.hidden_size == 7
    assert build_model("cnn-gru-bn", rng=0).config["batch_norm"] is True
    with pytest.raises(ValueError, match="unknown model 'resnet'.*seed-cnn"):
        build_model("resnet")
    with pytest.raises(TypeError, match="does not take these arguments"):
        build_model("seed-cnn", hidden_size=3)


@pytest.mark.parametrize("name", ["seed-cnn", "cnn-gru", "cnn-gru-bn", "row-gru"])
def test_config_rebuilds_the_same_model(name):
    model = build_model(name, rng=1)
    again = build_model(name, rng=2, **json.loads(json.dumps(model.config)))
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in again.state_dict().items()}
    assert again.config == model.config


def test_same_seed_same_model_and_dtype():
    a, b = CNNGRU(rng=5), CNNGRU(rng=5)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert np.array_equal(p.data, q.data), name
    assert not np.array_equal(a.fc.weight.data, CNNGRU(rng=6).fc.weight.data)
    assert all(p.dtype == F64 for p in RowGRU(dtype=F64, rng=0).parameters())


def test_preset_best_and_overrides():
    model = CNNGRU.preset("best", hidden_size=32, rng=0)
    assert model.config["widths"] == list(CNNGRU_PRESETS["best"]["widths"]) and model.gru.hidden_size == 32
    with pytest.raises(ValueError, match="unknown CNNGRU preset"):
        CNNGRU.preset("fastest")


@pytest.mark.parametrize("make, match", [
    (lambda: CNNGRU(image_size=4, widths=(8, 8, 8)), "too small for 3 conv blocks"),
    (lambda: SeedCNN(image_size=(32, 2), widths=(8, 8)), "too small"),
    (lambda: CNNGRU(readout="max"), "readout must be one of"),
    (lambda: CNNGRU(widths=()), "at least one channel count"),
    (lambda: CNNGRU(widths=(8, -1)), "positive integer"),
    (lambda: CNNGRU(widths=(8, 8), convs_per_block=(1, 2, 3)), "3 counts for 2 blocks"),
    (lambda: SeedCNN(dropout=1.5), "dropout must be in"),
    (lambda: RowGRU(image_size="big"), "image_size must be"),
    (lambda: RowGRU(hidden_size=0), "hidden_size must be a positive integer"),
])
def test_bad_arguments_give_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_give_clear_errors():
    model = CNNGRU(widths=(4,), hidden_size=4, rng=0)
    with pytest.raises(ValueError, match="channels-last"):
        model(np.zeros((2, 32, 32, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="float32 parameters but got a float64"):
        model(np.zeros((2, 3, 32, 32)))
    with pytest.raises(ValueError, match="built for 32x32 images"):
        RowGRU(rng=0)(np.zeros((2, 3, 16, 16), dtype=np.float32))
    with pytest.raises(ValueError, match=r"with 3 channels \(N, 3, 32, 32\)"):
        RowGRU(rng=0)(np.zeros((2, 1, 32, 32), dtype=np.float32))
    with pytest.raises(RuntimeError, match="needs a forward"):
        CNNGRU(widths=(4,), rng=0).backward(np.zeros((2, 10), dtype=np.float32))
