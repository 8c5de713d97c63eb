"""WhitenedCNNGRU (cnn-gru-fast, cnn-gru-hour): shapes, whole-model gradient check, a torch twin, the
input_grad speed option, the trained-conv ablation, the registry entries and a short learning run."""
import json

import numpy as np
import pytest

from minigru import nn
from minigru.data import make_shapes
from minigru.gradcheck import check_module, rel_error
from minigru.models import build_model, default_recipe, get_spec
from minigru.models.whitened_cnn_gru import WhitenedCNNGRU
from minigru.optim import SGD

# 10x10 -> 9x9 (2x2 whitening) -> 4x4 -> 2x2: two GRU steps. A whitening ε of 0.1 keeps the filters' gain
# small, so that the finite differences of the input gradient are not drowned in amplified round-off.
TINY = dict(num_classes=3, in_channels=1, image_size=10, widths=(2, 3), convs_per_block=(1, 2), hidden_size=2,
            whiten_eps=0.1)


def tiny(rng, **overrides):
    x = rng.standard_normal((3, 1, 10, 10))
    model = WhitenedCNNGRU(**{**TINY, **overrides}, rng=1, dtype=np.float64).initialize_from_data(x)
    return model, x


@pytest.mark.parametrize("overrides", [{}, dict(whiten=False, readout="mean", dropout=0.3, num_layers=2),
                                       dict(activation="gelu")])
def test_whole_model_gradcheck(xp, overrides):
    model, x = tiny(np.random.default_rng(1), **overrides)
    report = check_module(model, xp.asarray(x), verbose=False)
    assert report.passed, str(report)
    assert len(report) == 1 + len(list(model.parameters()))      # the input and every parameter


def test_matches_a_torch_twin():
    torch = pytest.importorskip("torch")
    from minigru import interop
    rng = np.random.default_rng(1)
    model, x = tiny(rng)
    features = interop.export_to_torch(model.features)
    gru, fc = interop.export_to_torch(model.gru), interop.export_to_torch(model.fc)
    filters = torch.tensor(model.whiten.weight)

    def twin(xt):
        f = features(torch.relu(torch.nn.functional.conv2d(xt, filters)))
        seq = f.permute(3, 0, 1, 2).reshape(f.shape[3], f.shape[0], -1)    # columns, left to right
        _, h_n = gru(seq)
        return fc(torch.cat([h_n[-2], h_n[-1]], dim=1))

    dlogits = rng.standard_normal((3, 3))
    xt = torch.tensor(x, requires_grad=True)
    logits_t = twin(xt)
    logits_t.backward(torch.tensor(dlogits))
    logits = model(x)
    assert rel_error(logits, logits_t.detach().numpy()) < 1e-10
    assert rel_error(model.backward(dlogits), xt.grad.numpy()) < 1e-10
    theirs = {**{f"features.{k}": v for k, v in features.named_parameters()},
              **{f"gru.{k}": v for k, v in gru.named_parameters()}, **{f"fc.{k}": v for k, v in fc.named_parameters()}}
    for name, p in model.named_parameters():
        assert rel_error(p.grad, theirs[name].grad.numpy()) < 1e-10, name


def test_dirac_init_sets_the_first_filters_to_the_identity_and_keeps_the_others():
    plain, _ = tiny(np.random.default_rng(1))
    dirac, _ = tiny(np.random.default_rng(1), dirac_init=True)
    convs = [(name, layer) for name, layer in dirac.features.named_children() if isinstance(layer, nn.Conv2d)]
    assert len(convs) == 3
    for name, conv in convs:
        w, w_plain = conv.weight.data, getattr(plain.features, name).weight.data
        o, i = w.shape[:2]
        identity = np.zeros((min(o, i), i, 3, 3))
        identity[np.arange(min(o, i)), np.arange(min(o, i)), 1, 1] = 1
        np.testing.assert_array_equal(w[:i], identity, err_msg=name)
        np.testing.assert_array_equal(w[i:], w_plain[i:], err_msg=name)      # the rest: the same draw
    assert dirac.config["dirac_init"] and not plain.config["dirac_init"]


@pytest.mark.parametrize("momentum", [0.1, 0.4])
def test_bn_momentum_reaches_every_batch_norm_and_their_running_statistics(momentum):
    """bn_momentum is each BatchNorm2d's momentum: after one training-mode pass the running mean is
    momentum x the batch mean (from 0), checked against the block's own input computed separately."""
    model, x = tiny(np.random.default_rng(2), bn_momentum=momentum)
    norms = [layer for layer in model.features.children() if isinstance(layer, nn.BatchNorm2d)]
    assert norms and all(layer.momentum == momentum for layer in norms)
    assert model.config["bn_momentum"] == momentum
    model.train()
    first_conv_out = model.features[0](model.whiten_relu(model.whiten(x)))    # what the first batch norm sees
    model.forward(x)
    np.testing.assert_allclose(norms[0].running_mean, momentum * first_conv_out.mean(axis=(0, 2, 3)), rtol=1e-10)


def test_input_grad_false_gives_the_same_parameter_gradients():
    rng = np.random.default_rng(2)
    full, x = tiny(rng)
    fast, _ = tiny(rng, input_grad=False)
    fast.load_state_dict(full.state_dict())
    dlogits = rng.standard_normal((3, 3))
    np.testing.assert_array_equal(full(x), fast(x))
    assert full.backward(dlogits) is not None and fast.backward(dlogits) is None
    assert fast.features[0].input_grad is False
    for (name, p), (_, q) in zip(full.named_parameters(), fast.named_parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-12, err_msg=name)


def test_the_whitening_is_fixed_and_the_ablation_trains_its_conv():
    rng = np.random.default_rng(3)
    model, _ = tiny(rng)
    assert not any(name.startswith("whiten.") for name, _ in model.named_parameters())
    assert {"whiten.weight", "whiten.fitted"} <= set(model.state_dict())
    ablation, _ = tiny(rng, whiten=False)
    assert "whiten.weight" in dict(ablation.named_parameters())
    assert ablation.whiten.weight.shape == model.whiten.weight.shape       # same shape, trained instead


def test_registered_recipes_build_and_map_cifar_images():
    rng = np.random.default_rng(4)
    # columns the GRU reads: fast 32 -> 16 (stride-2 whitening) -> 8 -> 4; hour 32 -> 31 (stride 1) -> 15 -> 7 -> 3
    for name, steps in (("cnn-gru-fast", 4), ("cnn-gru-hour", 3)):
        spec = get_spec(name)
        assert spec.builder is WhitenedCNNGRU
        recipe = default_recipe(name)
        assert recipe["schedule"] == "linear" and recipe["nesterov"] and recipe["label_smoothing"] > 0
        model = build_model(name, rng=0)
        assert model.config["input_grad"] is False and model.gru.bidirectional
        assert model.sequence_length == steps
        x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
        with pytest.raises(RuntimeError, match="fit"):
            model(x)
        model.initialize_from_data(x)
        logits = model(x)
        assert logits.shape == (2, 10) and logits.dtype == np.float32
        assert model.backward(np.ones_like(logits)) is None
        again = build_model(name, rng=1, **json.loads(json.dumps(model.config)))
        assert again.config == model.config


def test_a_few_training_steps_lower_the_loss():
    data = make_shapes(64, image_size=16, seed=0, n_classes=4)
    x = data.train_images.astype(np.float32) / 255.0 - 0.5
    y = data.train_labels
    model = WhitenedCNNGRU(num_classes=4, image_size=16, widths=(8, 16), hidden_size=16, input_grad=False,
                           rng=0).initialize_from_data(x)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        losses.append(float(loss_fn(model(x), y)))
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < 0.6 * losses[0], losses


def test_bad_arguments():
    with pytest.raises(ValueError, match="too small"):
        WhitenedCNNGRU(image_size=8, widths=(4, 4, 4))
    with pytest.raises(ValueError, match="whiten_kernel"):
        WhitenedCNNGRU(whiten_kernel=0)


def test_gelu_takes_every_relus_place():
    """activation="gelu": airbench's GELU (PyTorch's tanh form) after the whitening and in every block, none of
    the ReLUs left; the choice is kept in the model's config; an unknown name is refused."""
    relu = WhitenedCNNGRU(**TINY, rng=1)
    gelu = WhitenedCNNGRU(**TINY, activation="gelu", rng=1)
    kinds = [type(m).__name__ for m in relu.modules()]
    assert [k.replace("ReLU", "GELU") for k in kinds] == [type(m).__name__ for m in gelu.modules()]
    assert kinds.count("ReLU") == 4
    assert all(m.approximate == "tanh" for m in gelu.modules() if isinstance(m, nn.GELU))
    assert gelu.config["activation"] == "gelu" and relu.config["activation"] == "relu"
    with pytest.raises(ValueError, match="activation must be one of 'relu', 'gelu'"):
        WhitenedCNNGRU(**TINY, activation="swish")
