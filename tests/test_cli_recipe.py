"""The speed-run ingredients on the command line: cnn-gru-fast's whitening fitted from the training images,
the warm-up + linear-decay schedule (against torch), --nesterov, and --ema (results, checkpoint, exact resume)."""
import json

import numpy as np
import pytest

from minigru import backend, cli
from minigru.cli import run as cli_run
from minigru.models import load_trained
from minigru.train import read_checkpoint

# cnn-gru-fast shrunk to 16x16 synthetic images: 16 -> 8 (2x2 whitening, stride 2) -> 4 -> 2, two GRU steps.
TINY = ["--model", "cnn-gru-fast", "--dataset", "synthetic-shapes", "--limit-train", "96", "--limit-test", "20",
        "--batch-size", "16", "--no-progress", "--model-arg", "image_size=16", "--model-arg", "widths=[4,6]",
        "--model-arg", "convs_per_block=1", "--model-arg", "hidden_size=5"]


def train(tmp_path, *extra, name="run"):
    out = tmp_path / name
    return cli.main(["train", *TINY, "--out", str(out), *extra]), out


def test_fast_recipe_fits_the_whitening_and_trains_with_ema(tmp_path, capsys):
    status, out = train(tmp_path, "--epochs", "2", "--ema", "0.9")
    assert status == 0
    printed = capsys.readouterr().out
    assert "without the weight average" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["schedule"] == "linear" and config["ema"] == 0.9 and config["val_split"] == 0.0
    saved = read_checkpoint(out / "checkpoint.npz")
    assert int(saved["model"]["whiten.fitted"]) == 1
    filters = saved["model"]["whiten.weight"]
    assert filters.shape == (24, 3, 2, 2) and np.abs(filters).max() > 0
    ema = saved["extra"]["ema"]
    assert ema["n_averaged"] == 2 * (96 // 16) and ema["decay"] == 0.9
    for key, value in ema["average"].items():   # the final checkpoint holds the averaged weights
        np.testing.assert_allclose(saved["model"][key], value.astype(np.float32), rtol=1e-6, err_msg=key)
    results = json.loads((out / "results.json").read_text())
    assert {"test_accuracy_without_ema", "test_accuracy_without_tta"} <= set(results)
    # evaluate reads the same (averaged) model back, so it reproduces the reported figure
    assert cli.main(["evaluate", str(out / "checkpoint.npz")]) == 0
    assert f"test accuracy {100 * results['test_accuracy']:.2f}%" in capsys.readouterr().out
    model, _ = load_trained(out)
    assert int(model.whiten.fitted) == 1


@pytest.mark.parametrize("extra", [("--ema", "0.8"), ("--ema", "0.8", "--bn-bias-lr-scale", "8", "--freeze-bn-weight")])
def test_resume_with_ema_continues_exactly(tmp_path, interrupted_after_epoch, extra):
    status, straight = train(tmp_path, "--epochs", "3", *extra, name="straight")
    assert status == 0
    with interrupted_after_epoch(2):
        status, resumed = train(tmp_path, "--epochs", "3", *extra, name="resumed")
    assert status == 130
    assert cli.main(["train", "--out", str(resumed), "--resume", "--no-progress"]) == 0
    a, b = read_checkpoint(straight / "checkpoint.npz"), read_checkpoint(resumed / "checkpoint.npz")
    for key in a["model"]:
        assert np.array_equal(a["model"][key], b["model"][key]), key
    assert a["extra"]["ema"]["n_averaged"] == b["extra"]["ema"]["n_averaged"]
    for key in a["extra"]["ema"]["average"]:
        assert np.array_equal(a["extra"]["ema"]["average"][key], b["extra"]["ema"]["average"][key]), key


@pytest.mark.parametrize("pct_start", [0.15, 0.4])
def test_linear_schedule_is_torchs_one_cycle_with_linear_annealing(pct_start):
    torch = pytest.importorskip("torch")
    from minigru import nn
    from minigru.optim import SGD
    config = {"schedule": "linear", "lr": 0.2, "epochs": 3, "pct_start": pct_start}
    model = nn.Linear(2, 2, rng=0)
    ours = SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True)
    sched = cli_run.make_scheduler(ours, config, steps_per_epoch=7)
    theirs = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.2, momentum=0.9, nesterov=True)
    torch_sched = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=0.2, epochs=3, steps_per_epoch=7,
                                                      pct_start=pct_start, anneal_strategy="linear",
                                                      cycle_momentum=False, div_factor=10.0, final_div_factor=1e4)
    lrs = []
    for _ in range(21):
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        assert ours.param_groups[0]["momentum"] == 0.9                      # constant momentum
        lrs.append(ours.param_groups[0]["lr"])
        theirs.step()
        sched.step()
        torch_sched.step()
    peak = int(np.argmax(lrs))
    assert lrs[0] == pytest.approx(0.02) and 0.15 < lrs[peak] <= 0.2     # from lr/10 up to (near) lr
    assert np.all(np.diff(lrs[:peak + 1]) > 0) and np.all(np.diff(lrs[peak:]) < 0)
    # straight lines: equal steps within each phase (the step across the peak, which falls between two
    # steps, is the one exception)
    d = np.diff(lrs)
    rising, falling = d[d > 0], d[d < 0]
    np.testing.assert_allclose(rising[:-1], rising[0], rtol=1e-9)
    np.testing.assert_allclose(falling[1:], falling[-1], rtol=1e-9)


def test_nesterov_flag(tmp_path, capsys):
    config = cli_run.resolve_config(cli.build_parser().parse_args(["train", *TINY, "--no-nesterov"]))
    assert config["nesterov"] is False
    from minigru.models import build_model
    model = build_model("cnn-gru-fast", rng=0, **config["model_args"])
    assert cli_run.make_optimizer(model, config).param_groups[0]["nesterov"] is False
    assert cli_run.make_optimizer(model, {**config, "nesterov": True}).param_groups[0]["nesterov"] is True
    assert cli.main(["train", *TINY, "--out", str(tmp_path / "bad"), "--momentum", "0"]) == 2
    assert "--nesterov needs --momentum > 0" in capsys.readouterr().err
    assert cli.main(["train", *TINY, "--out", str(tmp_path / "bad"), "--ema", "1.5"]) == 2
    assert "--ema must be in [0, 1)" in capsys.readouterr().err


def _groups_of(optimizer):
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}


@pytest.mark.parametrize("scale, freeze", [(1.0, False), (64.0, False), (8.0, True), (1.0, True)])
def test_batch_norm_groups_scale_the_shifts_and_freeze_the_scales(scale, freeze):
    """Every parameter in exactly one group; batch norm's shifts at scale x lr, its frozen scales at lr 0,
    weight decay only on kernels and matrices."""
    from minigru.models import build_model
    from minigru.nn import BatchNorm2d
    config = cli_run.resolve_config(cli.build_parser().parse_args(["train", *TINY]))
    config.update(bn_bias_lr_scale=scale, freeze_bn_weight=freeze)
    model = build_model("cnn-gru-fast", rng=0, **config["model_args"])
    optimizer = cli_run.make_optimizer(model, config)
    listed = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(listed) == sorted(id(p) for p in model.parameters())           # each once, none left out
    groups, lr = _groups_of(optimizer), config["lr"]
    norms = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    assert norms
    for m in norms:
        assert groups[id(m.bias)]["lr"] == pytest.approx(scale * lr) and groups[id(m.bias)]["weight_decay"] == 0
        assert groups[id(m.weight)]["lr"] == (0.0 if freeze else pytest.approx(lr))
    shifts_and_scales = {id(m.bias) for m in norms} | {id(m.weight) for m in norms}
    for name, p in model.named_parameters():
        if id(p) not in shifts_and_scales:
            assert groups[id(p)]["lr"] == pytest.approx(lr), name
            assert groups[id(p)]["weight_decay"] == (config["weight_decay"] if p.data.ndim > 1 else 0.0), name


def test_scaled_shifts_step_scale_times_as_far_and_frozen_scales_stay_one(tmp_path):
    """Two runs from the same seed, one step: the shifts of the scaled run moved exactly `scale` times as
    far (a first SGD step is linear in the rate), everything else identically; frozen scales end at 1."""
    from minigru.nn import BatchNorm2d
    common = ["--epochs", "1", "--limit-train", "16", "--lr", "0.05", "--momentum", "0.9"]
    runs = {}
    for name, extra in (("plain", []), ("scaled", ["--bn-bias-lr-scale", "8"])):
        status, out = train(tmp_path, *common, *extra, name=name)
        assert status == 0
        runs[name] = read_checkpoint(out / "checkpoint.npz")["model"]
    model, _ = load_trained(tmp_path / "plain")
    start = cli_run.registry.build_model("cnn-gru-fast", rng=0, **model.config).state_dict()
    shifts = {f"{name}.bias" for name, m in model.named_modules() if isinstance(m, BatchNorm2d)}
    assert shifts
    for key, before in start.items():
        if key.startswith("whiten.") or "running" in key or "num_batches" in key:
            continue
        moved_plain, moved_scaled = runs["plain"][key] - before, runs["scaled"][key] - before
        factor = 8.0 if key in shifts else 1.0
        np.testing.assert_allclose(moved_scaled, factor * moved_plain, rtol=1e-4, atol=1e-7, err_msg=key)
        if key in shifts:
            assert np.abs(moved_plain).max() > 0, key
    status, out = train(tmp_path, "--epochs", "2", "--freeze-bn-weight", name="frozen")
    assert status == 0
    saved = read_checkpoint(out / "checkpoint.npz")["model"]
    scales = [f"{name}.weight" for name, m in model.named_modules() if isinstance(m, BatchNorm2d)]
    for key in scales:
        np.testing.assert_array_equal(saved[key], 1.0, err_msg=key)
    assert json.loads((out / "config.json").read_text())["freeze_bn_weight"] is True


def test_per_group_peaks_follow_torchs_one_cycle():
    """The scheduler ramps each of make_optimizer's groups to its own peak (shifts at 64 x lr, frozen scales
    at 0), as torch's OneCycleLR with a list of max_lr does."""
    torch = pytest.importorskip("torch")
    from minigru.models import build_model
    config = cli_run.resolve_config(cli.build_parser().parse_args(
        ["train", *TINY, "--bn-bias-lr-scale", "64", "--freeze-bn-weight", "--schedule", "linear"]))
    ours = cli_run.make_optimizer(build_model("cnn-gru-fast", rng=0, **config["model_args"]), config)
    sched = cli_run.make_scheduler(ours, config, steps_per_epoch=5, epochs=2)
    lr = config["lr"]
    peaks = [lr, lr, 64 * lr, 0.0]
    assert len(ours.param_groups) == len(peaks)
    tensors = [torch.zeros(2, requires_grad=True) for _ in peaks]
    theirs = torch.optim.SGD([{"params": [t]} for t in tensors], lr=lr, momentum=0.9, nesterov=True)
    torch_sched = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=peaks, epochs=2, steps_per_epoch=5,
                                                      pct_start=config["pct_start"], anneal_strategy="linear",
                                                      cycle_momentum=False, div_factor=10.0, final_div_factor=1e4)
    scaled = []
    for _ in range(10):
        for a, b in zip(ours.param_groups, theirs.param_groups):
            assert a["lr"] == pytest.approx(b["lr"], rel=1e-12, abs=1e-15)
        scaled.append(ours.param_groups[2]["lr"])
        theirs.step()
        sched.step()
        torch_sched.step()
    assert max(scaled) > 10 * lr and ours.param_groups[3]["lr"] == 0.0    # each group on its own schedule


def test_bad_bias_scale_is_one_line(tmp_path, capsys):
    assert cli.main(["train", *TINY, "--out", str(tmp_path / "bad"), "--bn-bias-lr-scale", "0"]) == 2
    err = capsys.readouterr().err
    assert "--bn-bias-lr-scale must be positive" in err and "Traceback" not in err


def test_hour_recipe_trains_with_airbenchs_optimisation_ingredients(tmp_path):
    """cnn-gru-hour's recipe (docs/models.md, "The hour recipe, measured") trains on two replicas, with batch
    norm's shifts at 64 x lr and its scales fixed at 1, batch-norm momentum 0.4, Lookahead, alternating flips,
    identity-initialised block convolutions and GELU activations; each option turns its part back off, and
    cnn-gru-fast's recipe has none of them."""
    from minigru.nn import GELU, BatchNorm2d, Conv2d, ReLU
    parse = cli.build_parser().parse_args
    hour = ["train", "--model", "cnn-gru-hour", "--dataset", "synthetic-shapes", "--limit-train", "32",
            "--limit-test", "8", "--batch-size", "16", "--epochs", "1", "--no-progress", "--model-arg", "image_size=16",
            "--model-arg", "widths=[4,6]", "--model-arg", "convs_per_block=1", "--model-arg", "hidden_size=5"]
    config = cli_run.resolve_config(parse(hour))
    assert (config["bn_bias_lr_scale"], config["freeze_bn_weight"], config["lookahead"]) == (64.0, True, True)
    assert config["model_args"]["bn_momentum"] == 0.4 and config["augment"] == "translate-altflip"
    assert (config["replicas"], config["epochs"]) == (2, 1)     # two replicas; --epochs 1 overrides its 13
    assert cli_run.registry.default_recipe("cnn-gru-hour")["epochs"] == 13
    model = cli_run.registry.build_model("cnn-gru-hour", rng=0, **config["model_args"])
    norms = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    assert norms and all(m.momentum == 0.4 for m in norms)
    convs = [m for m in model.features.modules() if isinstance(m, Conv2d)]
    for conv in convs:           # dirac_init: filter i < min(in, out channels) passes input channel i through
        w = backend.to_numpy(conv.weight.data)
        k = min(w.shape[:2])
        identity = np.zeros((k, w.shape[1], 3, 3))
        identity[np.arange(k), np.arange(k), 1, 1] = 1
        np.testing.assert_array_equal(w[:k], identity)
    assert convs and config["model_args"]["dirac_init"] is True
    activations = [m for m in model.modules() if isinstance(m, (GELU, ReLU))]    # after the whitening, each conv
    assert len(activations) == 1 + len(convs) and config["model_args"]["activation"] == "gelu"
    assert all(isinstance(m, GELU) and m.approximate == "tanh" for m in activations)
    groups = _groups_of(cli_run.make_optimizer(model, config))
    assert all(groups[id(m.bias)]["lr"] == pytest.approx(64 * config["lr"]) for m in norms)
    assert all(groups[id(m.weight)]["lr"] == 0.0 for m in norms)
    assert cli.main([*hour, "--out", str(tmp_path / "hour")]) == 0         # a run of it keeps the slow weights
    assert "lookahead" in read_checkpoint(tmp_path / "hour" / "checkpoint.npz")["extra"]
    off = cli_run.resolve_config(parse([*hour, "--bn-bias-lr-scale", "1", "--no-freeze-bn-weight", "--no-lookahead",
                                        "--model-arg", "bn_momentum=0.1", "--augment", "translate-flip",
                                        "--model-arg", "dirac_init=false", "--model-arg", "activation=relu"]))
    assert (off["bn_bias_lr_scale"], off["freeze_bn_weight"], off["lookahead"]) == (1.0, False, False)
    assert off["model_args"]["bn_momentum"] == 0.1 and off["augment"] == "translate-flip"
    assert off["model_args"]["dirac_init"] is False and off["model_args"]["activation"] == "relu"
    plain = cli_run.registry.build_model("cnn-gru-hour", rng=0, **off["model_args"])
    assert not any(isinstance(m, GELU) for m in plain.modules())
    fast = cli_run.resolve_config(parse(["train", *TINY]))
    assert (fast["bn_bias_lr_scale"], fast["freeze_bn_weight"], fast["lookahead"]) == (1.0, False, False)
    assert fast["replicas"] == 1
    assert fast["model_args"]["bn_momentum"] == 0.1 and fast["augment"] == "translate-flip"
    assert not fast["model_args"].get("dirac_init", False)
    assert fast["model_args"].get("activation", "relu") == "relu"


def test_replicas_split_each_batch_and_resume_exactly(tmp_path, capsys, interrupted_after_epoch):
    """--replicas 2 trains on two replicas (the header says so, the config keeps it); a run interrupted after
    one epoch and resumed ends with the same weights as one uninterrupted run, dropout masks included."""
    extra = ("--epochs", "2", "--replicas", "2", "--model-arg", "dropout=0.3")
    status, straight = train(tmp_path, *extra, name="straight")
    assert status == 0
    assert "2 replicas (one thread each, 8 images)" in capsys.readouterr().out
    assert json.loads((straight / "config.json").read_text())["replicas"] == 2
    with interrupted_after_epoch(1):
        status, resumed = train(tmp_path, *extra, name="resumed")
    assert status == 130
    assert cli.main(["train", "--out", str(resumed), "--resume", "--no-progress"]) == 0
    a, b = (read_checkpoint(out / "checkpoint.npz")["model"] for out in (straight, resumed))
    for key, value in a.items():
        np.testing.assert_array_equal(b[key], value, err_msg=key)
    alone = train(tmp_path, "--epochs", "1", name="alone")[1]
    config = json.loads((alone / "config.json").read_text())
    assert config["replicas"] == 1
    del config["replicas"]                          # a run saved before the option existed
    assert cli_run.normalise_config(config)["replicas"] == 1
