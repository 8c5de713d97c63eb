"""The speed-run ingredients on the command line: cnn-gru-fast's whitening fitted from the training images,
the warm-up + linear-decay schedule (against torch), --nesterov, and --ema (results, checkpoint, exact resume)."""
import json

import numpy as np
import pytest

from minigru import cli
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


def test_resume_with_ema_continues_exactly(tmp_path, interrupted_after_epoch):
    status, straight = train(tmp_path, "--epochs", "3", "--ema", "0.8", name="straight")
    assert status == 0
    with interrupted_after_epoch(2):
        status, resumed = train(tmp_path, "--epochs", "3", "--ema", "0.8", name="resumed")
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
