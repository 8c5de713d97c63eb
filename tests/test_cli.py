"""The `minigru` command line: train on synthetic data, evaluate, exact resume, gradcheck, clear errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

from minigru import backend, cli
from minigru.models import build_model, load_trained
from minigru.train import read_checkpoint, save_checkpoint

# A tiny CNNGRU on 8x8 synthetic images: one epoch takes a fraction of a second.
TINY = ["--model", "cnn-gru-bn", "--dataset", "synthetic-shapes", "--limit-train", "96", "--limit-test", "20",
        "--batch-size", "16", "--val-split", "0.2", "--no-progress",
        "--model-arg", "image_size=8", "--model-arg", "widths=[4,6]", "--model-arg", "convs_per_block=1",
        "--model-arg", "hidden_size=5"]


def train(tmp_path, *extra, name="run"):
    out = tmp_path / name
    return cli.main(["train", *TINY, "--out", str(out), *extra]), out


def test_train_writes_every_file_and_evaluate_reads_them_back(tmp_path, capsys):
    status, out = train(tmp_path, "--epochs", "1")
    assert status == 0
    for name in ("checkpoint.npz", "history.json", "learning_curve.png", "config.json", "results.json"):
        assert (out / name).is_file(), name
    printed = capsys.readouterr().out
    assert "final test accuracy" in printed and "confusion matrix" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "cnn-gru-bn" and config["epochs"] == 1 and config["model_args"]["widths"] == [4, 6]
    assert config["model_args"]["batch_norm"] is True      # the registry default, kept in the full config
    assert set(config["normalize"]) == {"mean", "std"} and len(config["normalize"]["mean"]) == 3
    assert read_checkpoint(out / "checkpoint.npz")["extra"]["config"] == config
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [1] and history["val_accuracy"][0] is not None
    results = json.loads((out / "results.json").read_text())

    assert cli.main(["evaluate", str(out / "checkpoint.npz")]) == 0
    printed = capsys.readouterr().out
    assert f"test accuracy {100 * results['test_accuracy']:.2f}% on 20 images (test-time augmentation: flip)" in printed
    assert "per-class accuracy" in printed and "true \\ pred" in printed
    assert results["tta"] == "flip"                          # the cnn-gru-bn recipe averages with mirror images
    assert cli.main(["evaluate", str(out / "checkpoint.npz"), "--no-tta"]) == 0
    assert f"test accuracy {100 * results['test_accuracy_without_tta']:.2f}% on 20 images\n" in capsys.readouterr().out

    # The same model from Python: rebuilt from the configuration inside the checkpoint, weights loaded.
    model, loaded_config = load_trained(out)
    assert loaded_config == config and not model.training
    saved = read_checkpoint(out / "checkpoint.npz")["model"]
    assert saved.keys() == model.state_dict().keys()
    assert all(np.array_equal(model.state_dict()[k], saved[k]) for k in saved)


def test_resume_continues_an_interrupted_run_exactly(tmp_path, interrupted_after_epoch):
    status, straight = train(tmp_path, "--epochs", "3", "--model-arg", "dropout=0.3", name="straight")
    assert status == 0

    with interrupted_after_epoch(2):
        status, resumed = train(tmp_path, "--epochs", "3", "--model-arg", "dropout=0.3", name="resumed")
    assert status == 130                                     # stopped after epoch 2, checkpoint written
    assert read_checkpoint(resumed / "checkpoint.npz")["epoch"] == 2
    assert cli.main(["train", "--out", str(resumed), "--resume", "--no-progress"]) == 0

    a, b = read_checkpoint(straight / "checkpoint.npz"), read_checkpoint(resumed / "checkpoint.npz")
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert np.array_equal(a["model"][key], b["model"][key]), key
    assert a["history"]["train_loss"] == b["history"]["train_loss"]
    assert json.loads((straight / "results.json").read_text())["test_accuracy"] == \
        json.loads((resumed / "results.json").read_text())["test_accuracy"]


def test_resume_refuses_other_settings_and_missing_runs(tmp_path, capsys):
    status, out = train(tmp_path, "--epochs", "1")
    assert status == 0
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), "--resume", "--lr", "0.5"]) == 2
    assert "--lr 0.5 (the run has" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "no run to continue" in capsys.readouterr().err
    assert cli.main(["train", *TINY, "--out", str(out), "--epochs", "1"]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["seed-cnn", "row-gru"])
def test_other_models_train_from_the_command_line(tmp_path, model):
    args = ["train", "--model", model, "--dataset", "synthetic-shapes", "--limit-train", "40", "--limit-test", "8",
            "--batch-size", "20", "--epochs", "1", "--no-progress", "--model-arg", "image_size=8",
            "--out", str(tmp_path / model), "--optimizer", "adam", "--schedule", "cosine", "--no-augment", "--tta"]
    args += (["--model-arg", "widths=[4]", "--model-arg", "hidden=[8]"] if model == "seed-cnn"
             else ["--model-arg", "hidden_size=6"])
    assert cli.main(args) == 0
    assert json.loads((tmp_path / model / "results.json").read_text())["tta"] == "flip"


def test_gradcheck_subcommand_passes(capsys):
    assert cli.main(["gradcheck"]) == 0
    printed = capsys.readouterr().out
    for name in ("Conv2d", "MaxPool2d", "BatchNorm2d", "GRU (reset after", "GRU (reset before", "LSTM", "RNN",
                 "CrossEntropyLoss", "CNNGRU"):
        assert name in printed, name
    assert "FAIL" not in printed and "passed (tolerance 1e-06)" in printed


def test_gradcheck_fails_loudly_on_an_impossible_tolerance(capsys):
    assert cli.main(["gradcheck", "--only", "Linear", "--tol", "0"]) == 1
    assert "FAILED: Linear" in capsys.readouterr().out


def test_models_subcommand_lists_every_model(capsys):
    assert cli.main(["models"]) == 0
    printed = capsys.readouterr().out
    for name in ("seed-cnn", "cnn-gru", "cnn-gru-bn", "row-gru", "parameters", "recipe"):
        assert name in printed


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--val-split", "1.5"], "--val-split must be in"),
    (["--model-arg", "hidden_size"], "expects KEY=VALUE"),
    (["--model-arg", "wings=3"], "does not take these arguments"),
    (["--model-arg", "widths=[4,6,8,10]"], "too small for 4 conv blocks"),
    (["--batch-size", "200"], "make no batch of 200"),
])
def test_bad_train_arguments_give_clear_errors(tmp_path, capsys, args, message):
    assert cli.main(["train", *TINY, "--out", str(tmp_path / "bad"), *args]) == 2
    assert message in capsys.readouterr().err


def test_argparse_rejects_unknown_choices(capsys):
    assert cli.main(["train", "--model", "resnet"]) == 2
    assert "invalid choice: 'resnet'" in capsys.readouterr().err


def test_missing_model_and_missing_data_are_explained(tmp_path, capsys):
    assert cli.main(["train", "--out", str(tmp_path / "x")]) == 2
    assert "--model is required" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["train", "--model", "cnn-gru", "--data", str(empty), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and "cifar-10-batches-bin" in err


def test_evaluate_errors(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "none.npz")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    foreign = tmp_path / "weights.npz"
    np.savez(foreign, w=np.zeros(3))
    assert cli.main(["evaluate", str(foreign)]) == 2
    assert "not a minigru checkpoint" in capsys.readouterr().err
    plain = tmp_path / "plain.npz"                 # a real checkpoint, but not written by `minigru train`
    save_checkpoint(plain, build_model("row-gru", hidden_size=3, rng=0))
    assert cli.main(["evaluate", str(plain)]) == 2
    assert "holds no run configuration" in capsys.readouterr().err
    with pytest.raises(ValueError, match="holds no run configuration"):
        load_trained(plain)


@pytest.mark.skipif(backend.cupy_available(), reason="checks the message shown when CuPy is missing")
def test_cupy_backend_unavailable_is_explained(tmp_path, capsys):
    assert cli.main(["train", *TINY, "--backend", "cupy", "--out", str(tmp_path / "gpu")]) == 2
    assert "cupy" in capsys.readouterr().err.lower()


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "minigru", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "train" in done.stdout and "gradcheck" in done.stdout


def test_build_run_returns_a_typed_run():
    import dataclasses

    from minigru.cli.datasets import load_data
    from minigru.cli.parser import build_parser
    from minigru.cli.run import Run, build_run, resolve_config
    args = build_parser().parse_args(["train", *TINY, "--epochs", "1"])
    config = resolve_config(args)
    run = build_run(config, load_data(config))
    assert isinstance(run, Run) and dataclasses.is_dataclass(run)
    assert {f.name for f in dataclasses.fields(Run)} >= {"model", "optimizer", "scheduler", "loss", "train_loader",
                                                           "val_loader", "test_loader", "data"}
    assert run.classes == run.data.classes and run.test_loader.num_samples == 20
    assert config["normalize"] and config["data"] is None          # generated data: no folder to remember
