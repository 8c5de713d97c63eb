"""`minigru train` on your own image folder, `evaluate` without repeating the data folder, extending a
finished run, the --threads choice, and the run's wording."""
import json
import shutil

import numpy as np
import pytest

from minigru import cli
from minigru.cli import train as cli_train
from minigru.train import read_checkpoint

PIL = pytest.importorskip("PIL.Image")

CLASSES = ("blue", "green", "red")
TINY_CNN = ["--model", "seed-cnn", "--batch-size", "8", "--model-arg", "image_size=8", "--model-arg", "widths=[4]",
            "--model-arg", "hidden=[8]", "--no-progress"]


def make_folder(root, per_class=8, sizes=((12, 10), (9, 9), (16, 20))):
    """Images of three colours (the class), of several sizes, as PNG and JPEG files in class folders."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            pixels[..., 2 - c] += 180                            # the class's colour dominates
            PIL.fromarray(pixels).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_folder_with_train_and_test_subfolders_then_evaluate_from_the_stored_folder(tmp_path, capsys,
                                                                                     monkeypatch):
    data = tmp_path / "photos"
    make_folder(data / "train", per_class=8)
    make_folder(data / "test", per_class=3)
    out = tmp_path / "run"
    assert cli.main(["train", *TINY_CNN, "--dataset", "folder", "--data", str(data), "--augment", "keras",
                     "--epochs", "2", "--val-split", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "24 training images" in printed and "augment keras" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "folder" and config["data"] == str(data.resolve())
    assert config["model_args"]["num_classes"] == 3 and config["augment"] == "keras"
    results = json.loads((out / "results.json").read_text())
    assert sum(sum(row) for row in results["confusion_matrix"]) == 9
    assert list(results["per_class_accuracy"]) == list(CLASSES)

    monkeypatch.chdir(tmp_path)                                 # evaluate needs no --data: the run knows it
    assert cli.main(["evaluate", str(out / "checkpoint.npz"), "--no-progress"]) == 0
    assert f"test accuracy {100 * results['test_accuracy']:.2f}% on 9 images" in capsys.readouterr().out

    shutil.move(str(data), str(tmp_path / "moved"))              # the data moved: the error says --data
    assert cli.main(["evaluate", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--data" in err
    assert cli.main(["evaluate", str(out), "--no-progress", "--data", str(tmp_path / "moved")]) == 0


def test_folder_without_test_subfolder_holds_out_a_seeded_split(tmp_path, capsys):
    data = make_folder(tmp_path / "flat", per_class=10)
    out = tmp_path / "run"
    assert cli.main(["train", *TINY_CNN, "--dataset", "folder", "--data", str(data), "--test-split", "0.2",
                     "--epochs", "1", "--val-split", "0", "--tta", "--out", str(out)]) == 0
    assert "24 training images" in capsys.readouterr().out     # 30 images, 6 held out
    results = json.loads((out / "results.json").read_text())
    assert sum(sum(row) for row in results["confusion_matrix"]) == 6
    assert cli.main(["evaluate", str(out), "--no-progress"]) == 0     # the same 6 images again
    printed = capsys.readouterr().out
    assert f"test accuracy {100 * results['test_accuracy']:.2f}% on 6 images" in printed
    assert f"test accuracy {100 * results['test_accuracy_without_tta']:.2f}%" in printed


def test_folder_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["train", *TINY_CNN, "--dataset", "folder", "--out", str(tmp_path / "a")]) == 2
    assert "needs --data DIR" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["train", *TINY_CNN, "--dataset", "folder", "--data", str(tmp_path / "empty"),
                     "--out", str(tmp_path / "b")]) == 2
    assert "no class sub-folders" in capsys.readouterr().err


SYNTH = ["--model", "seed-cnn", "--dataset", "synthetic-shapes", "--limit-train", "48", "--limit-test", "8",
         "--batch-size", "16", "--model-arg", "image_size=8", "--model-arg", "widths=[4]",
         "--model-arg", "hidden=[8]", "--model-arg", "dropout=0.2", "--no-progress", "--val-split", "0"]


def test_resume_with_more_epochs_extends_a_finished_run_with_a_new_cycle(tmp_path, interrupted_after_epoch):
    straight = tmp_path / "straight"
    assert cli.main(["train", *SYNTH, "--epochs", "2", "--out", str(straight)]) == 0
    assert cli.main(["train", "--out", str(straight), "--resume", "--epochs", "4", "--no-progress"]) == 0
    saved = read_checkpoint(straight / "checkpoint.npz")
    config = saved["extra"]["config"]
    assert saved["epoch"] == 4 and config["epochs"] == 4 and config["schedule_restarts"] == [2]
    lr = saved["history"]["lr"]
    assert lr[2] == pytest.approx(config["lr"] / 25)           # epoch 3 starts a new one-cycle warm-up
    assert lr[0] == pytest.approx(lr[2])

    # the same extension, interrupted after epoch 3 and resumed: exactly the same weights
    other = tmp_path / "interrupted"
    assert cli.main(["train", *SYNTH, "--epochs", "2", "--out", str(other)]) == 0
    with interrupted_after_epoch(3):
        assert cli.main(["train", "--out", str(other), "--resume", "--epochs", "4", "--no-progress"]) == 130
    assert cli.main(["train", "--out", str(other), "--resume", "--no-progress"]) == 0
    resumed = read_checkpoint(other / "checkpoint.npz")
    assert resumed["epoch"] == 4 and resumed["history"]["lr"] == lr
    for key in saved["model"]:
        assert np.array_equal(saved["model"][key], resumed["model"][key]), key


def test_extension_cannot_shorten_and_a_finished_run_is_only_scored(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *SYNTH, "--epochs", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "1"]) == 2
    assert "extended, not shortened" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "completed its 2 epochs" in printed and "final test accuracy" in printed
    assert read_checkpoint(out / "checkpoint.npz")["epoch"] == 2


def test_one_epoch_is_singular_and_threads_are_in_the_header(tmp_path, capsys, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    seen = []
    real_writer = cli_train._epoch_writer

    def spying_writer(*args):
        write = real_writer(*args)

        def on_epoch_end(trainer, record):
            seen.extend(info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas")
            write(trainer, record)
        return on_epoch_end

    monkeypatch.setattr(cli_train, "_epoch_writer", spying_writer)
    assert cli.main(["train", *SYNTH, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert ", 1 epoch, " in printed and "after 1 epoch " in printed and "1 epochs" not in printed
    assert "1 BLAS thread (default)" in printed
    kernels = [info.get("architecture") for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
    if kernels and kernels[0]:                  # OpenBLAS: the header names the kernels it runs
        assert f"with its {kernels[0]} kernels" in printed
    assert seen and set(seen) == {1}
    seen.clear()
    assert cli.main(["train", *SYNTH, "--epochs", "1", "--threads", "2", "--out", str(tmp_path / "two")]) == 0
    assert "2 BLAS threads (--threads)" in capsys.readouterr().out
    assert seen and set(seen) == {2}
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert cli.main(["train", *SYNTH, "--epochs", "1", "--out", str(tmp_path / "env")]) == 0
    assert "BLAS threads from OPENBLAS_NUM_THREADS=1" in capsys.readouterr().out


def test_the_progress_bar_shows_accuracy_as_a_percentage(tmp_path, capsys):
    pytest.importorskip("tqdm")
    args = [a for a in SYNTH if a != "--no-progress"]
    assert cli.main(["train", *args, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert f"acc {100 * history['train_accuracy'][0]:.2f}%" in err     # the epoch bar, as the lines show it
    assert "test: 100%" in err                                          # the test evaluation has a bar too
