"""The command line never shows a traceback for a user error: one line on stderr and a clear exit status.

Exit statuses: 2 for a usage or input error, 1 for a run whose loss diverged (the arguments were
valid), 0 otherwise. Most cases run ``main()`` in-process; a few run ``python -m minigru`` as a
subprocess, which is what a user sees.
"""
import argparse
import ast
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigru import cli
from minigru.cli import train as cli_train
from minigru.train import read_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_CNN = ["--model", "seed-cnn", "--dataset", "synthetic-shapes", "--limit-train", "64", "--limit-test", "8",
            "--batch-size", "16", "--model-arg", "image_size=8", "--model-arg", "widths=[4]",
            "--model-arg", "hidden=[8]", "--no-progress", "--val-split", "0"]


def one_line_error(err: str, *needles) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "allow_pickle" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def run_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    env.pop("MINIGRU_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "minigru", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)


# ------------------------------------------------------------------ as a user sees it
def test_unknown_model_is_one_line_with_the_choices_not_the_usage():
    done = run_cli("train", "--model", "resnet")
    assert done.returncode == 2 and done.stdout == ""
    line = one_line_error(done.stderr, "invalid choice: 'resnet'", "cnn-gru-bn", "row-gru")
    assert "usage:" not in line


def test_train_out_naming_an_existing_file(tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("not a run folder")
    done = run_cli("train", *TINY_CNN, "--out", str(existing))
    assert done.returncode == 2
    one_line_error(done.stderr, "--out", "notes.txt")
    assert existing.read_text() == "not a run folder"


def test_gradcheck_only_matching_nothing_is_an_error_on_stderr():
    done = run_cli("gradcheck", "--only", "zzz")
    assert done.returncode == 2 and done.stdout == ""
    one_line_error(done.stderr, "no entry matches --only 'zzz'")


@pytest.mark.parametrize("kind", ["text", "npy", "npy-object", "empty", "zip"])
def test_evaluate_on_a_file_that_is_no_checkpoint(tmp_path, kind):
    path = tmp_path / f"file.{kind}"
    if kind == "text":
        path.write_text("hello\n")
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif kind == "npy-object":
        with open(path, "wb") as f:
            np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        import zipfile
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("x.txt", "not an array")
    done = run_cli("evaluate", str(path))
    assert done.returncode == 2 and done.stdout == ""
    one_line_error(done.stderr, str(path.name))


def test_a_diverging_run_prints_one_line_keeps_no_checkpoint_and_exits_1(tmp_path):
    done = run_cli("train", *TINY_CNN, "--lr", "1e30", "--schedule", "constant", "--epochs", "2",
                   "--out", str(tmp_path / "div"))
    assert done.returncode == 1
    one_line_error(done.stderr, "the training loss became", "no checkpoint was written")
    assert not (tmp_path / "div" / "checkpoint.npz").exists()
    assert not (tmp_path / "div" / "results.json").exists()


def test_divergence_after_a_good_epoch_keeps_that_epochs_checkpoint(tmp_path, monkeypatch, capsys):
    real_writer = cli_train._epoch_writer

    def poisoning_writer(*args):   # after epoch 1 is saved, a weight becomes NaN: epoch 2's loss is NaN
        write = real_writer(*args)

        def on_epoch_end(trainer, record):
            write(trainer, record)
            if record["epoch"] == 1:
                next(iter(trainer.model.parameters())).data[...] = np.nan
        return on_epoch_end

    monkeypatch.setattr(cli_train, "_epoch_writer", poisoning_writer)
    out = tmp_path / "run"
    assert cli.main(["train", *TINY_CNN, "--epochs", "3", "--out", str(out)]) == 1
    line = one_line_error(capsys.readouterr().err, "the training loss became nan at epoch 2",
                          "the last good epoch (1)", "checkpoint.npz")
    assert line.startswith("minigru train: error: ")
    saved = read_checkpoint(out / "checkpoint.npz")
    assert saved["epoch"] == 1
    assert all(np.isfinite(w).all() for w in saved["model"].values())
    assert not (out / "results.json").exists()


# ------------------------------------------------------------------ every float flag rejects non-finite values
def _float_flags():
    """(command, flag) for every option of every command whose type turns text into a float."""
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = []
    for command, sub in subparsers.choices.items():
        for action in sub._actions:
            if not action.option_strings or action.type is None:
                continue
            try:
                converted = action.type("0.25")
            except (argparse.ArgumentTypeError, ValueError, TypeError):
                continue
            if isinstance(converted, float):
                flags.append((command, action.option_strings[0]))
    return flags


FLOAT_FLAGS = _float_flags()
NON_FINITE = st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-Infinity", "1e999", "-1e400"])


def test_the_float_flags_are_found():
    assert {("train", "--lr"), ("train", "--momentum"), ("train", "--val-split"), ("train", "--clip-grad-norm"),
            ("gradcheck", "--tol"), ("gradcheck", "--eps")} <= set(FLOAT_FLAGS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(FLOAT_FLAGS), text=NON_FINITE)
def test_every_float_flag_rejects_nan_and_infinity(capsys, flag, text):
    command, option = flag
    argv = [command, f"{option}={text}"] + (["checkpoint.npz"] if command == "evaluate" else [])
    assert cli.main(argv) == 2
    one_line_error(capsys.readouterr().err, f"minigru {command}: error: argument {option}", "finite", text)


@given(value=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_finite_values_pass_the_float_type(value):
    from minigru.cli.common import finite_float
    assert finite_float(repr(value)) == value


def test_non_finite_model_arguments_are_refused(tmp_path, capsys):
    assert cli.main(["train", *TINY_CNN, "--model-arg", "dropout=NaN", "--out", str(tmp_path / "x")]) == 2
    one_line_error(capsys.readouterr().err, "--model-arg dropout", "finite")


@pytest.mark.parametrize("args, message", [
    (["--momentum", "-0.5"], "--momentum must be >= 0"),
    (["--clip-grad-norm", "0"], "--clip-grad-norm must be positive"),
    (["--threads", "-1"], "--threads must be >= 0"),
    (["--replicas", "0"], "--replicas must be >= 1"),
    (["--replicas", "9"], "--batch-size 16 is too small for --replicas 9"),
])
def test_out_of_range_values_are_one_line_errors(tmp_path, capsys, args, message):
    assert cli.main(["train", *TINY_CNN, "--out", str(tmp_path / "bad"), *args]) == 2
    one_line_error(capsys.readouterr().err, message)


# ------------------------------------------------------------------ the package itself
def test_the_cli_package_has_no_import_cycle():
    """Every import between the modules of minigru/cli (top-level or inside functions) goes one way."""
    package = ROOT / "minigru" / "cli"
    names = {p.stem for p in package.glob("*.py")}
    graph = {}
    for path in package.glob("*.py"):
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    edges.add(node.module.split(".")[0])
                else:
                    edges.update(alias.name for alias in node.names if alias.name in names)
        graph[path.stem] = {e for e in edges if e in names and e != path.stem}
    assert {"__init__", "train", "evaluate", "gradcheck", "run", "common"} <= set(graph)
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join(trail + [node])
        state[node] = "open"
        for nxt in sorted(graph[node]):
            visit(nxt, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])
    # and nothing below the package entry point imports it back
    assert not any("__init__" in edges for name, edges in graph.items() if name != "__main__")


def test_results_json_holds_no_nan_for_a_class_without_test_images(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY_CNN, "--epochs", "1", "--limit-test", "3", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert None in results["per_class_accuracy"].values()   # 3 test images cannot cover 10 classes
