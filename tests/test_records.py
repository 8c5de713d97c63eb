"""Run records (minigru.records): a finished run folder becomes a small record that reads back the
same, carries no path of the machine that made it, and takes its weights only on request, small."""
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest

from minigru import cli, records
from minigru.cli.run import normalise_config
from minigru.models import build_model, default_recipe, load_trained, model_names
from minigru.train import read_checkpoint

TINY = ["--model", "cnn-gru-bn", "--dataset", "synthetic-shapes", "--limit-train", "64", "--limit-test", "16",
        "--batch-size", "16", "--val-split", "0.25", "--no-progress", "--epochs", "2",
        "--model-arg", "image_size=8", "--model-arg", "widths=[4,6]", "--model-arg", "convs_per_block=1",
        "--model-arg", "hidden_size=5"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert cli.main(["train", *TINY, "--out", str(out)]) == 0
    return out


def test_a_record_reads_back_as_the_run(run, tmp_path, capsys):
    assert records.main([str(run), "--to", str(tmp_path)]) == 0
    assert "record written to" in capsys.readouterr().out
    record, original = records.read_record(tmp_path / "tiny"), records.read_record(run)
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == sorted(records.RECORD_FILES)
    assert record["results"] == original["results"]
    assert record["history"].to_dict() == original["history"].to_dict() and len(record["history"]) == 2
    assert record["config"]["model_args"] == original["config"]["model_args"]
    assert record["weights"] is None and original["weights"] is not None


def test_absolute_paths_stay_behind_and_are_reported(run, tmp_path, capsys):
    config = json.loads((run / "config.json").read_text())
    config["data"] = str(tmp_path / "where" / "cifar")             # as a run that remembers its data folder
    config["nested"] = {"folders": ["relative/ok", "~/cache", "/abs"]}
    (tmp_path / "copy").mkdir()
    for name in records.RECORD_FILES:
        (tmp_path / "copy" / name).write_text((run / name).read_text())
    (tmp_path / "copy" / "config.json").write_text(json.dumps(config))
    assert records.main([str(tmp_path / "copy"), "--to", str(tmp_path / "out"), "--name", "clean"]) == 0
    printed = capsys.readouterr().out
    assert "config.data" in printed and "config.nested.folders[2]" in printed
    text = (tmp_path / "out" / "clean" / "config.json").read_text()
    assert str(tmp_path) not in text and "~/cache" not in text and "relative/ok" in text
    assert json.loads(text)["data"] is None


def test_weights_on_request_rebuild_the_trained_model(run, tmp_path):
    done = records.write_record(run, tmp_path, weights=True)
    assert 0 < done["weights_bytes"] <= records.MAX_WEIGHTS_BYTES
    model, config = load_trained(done["folder"])
    trained, _ = load_trained(run)
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    assert np.array_equal(model(x), trained(x))
    assert config == json.loads((done["folder"] / "config.json").read_text())
    # recorded again without --weights: the old weights go, they would not match the new record
    records.write_record(run, tmp_path)
    assert records.read_record(done["folder"])["weights"] is None


def test_weights_over_the_limit_are_refused(run, tmp_path, monkeypatch):
    monkeypatch.setattr(records, "MAX_WEIGHTS_BYTES", 100)
    with pytest.raises(records.RecordError, match="more than"):
        records.write_record(run, tmp_path, weights=True)
    assert not (tmp_path / "tiny" / records.WEIGHTS_FILE).exists()


def test_unfinished_or_foreign_folders_get_one_line_errors(run, tmp_path, capsys):
    assert records.main([str(tmp_path / "nowhere")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text((run / "config.json").read_text())
    assert records.main([str(tmp_path / "half"), "--to", str(tmp_path / "out")]) == 1
    assert "has not finished" in capsys.readouterr().err
    (tmp_path / "half" / "results.json").write_text("{}")
    (tmp_path / "half" / "history.json").write_text((run / "history.json").read_text())
    assert records.main([str(tmp_path / "half"), "--to", str(tmp_path / "out")]) == 1
    assert "test_accuracy" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()                          # nothing written for a bad run


def test_find_run_prefers_your_run_folder_and_names_no_machine_path(run, tmp_path):
    records.write_record(run, tmp_path / "records")
    found, where = records.find_run("tiny", tmp_path / "records", runs=run.parent)
    assert where == f"run folder {run.parent.name}/tiny" and found["weights"] is not None
    found, where = records.find_run("tiny", tmp_path / "records", runs=tmp_path / "no-runs")
    assert where == "record records/tiny" and found["weights"] is None
    assert str(tmp_path) not in where
    assert records.find_run("other", tmp_path / "records", runs=run.parent) == (None, None)


# ---------------------------------------------------------------- the records shipped with the notebooks
ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p for p in (ROOT / records.DEFAULT_RECORDS).iterdir() if p.is_dir() and p.name != "__pycache__")


def _strings(value):
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_record_reads_back_without_machine_paths(folder):
    record = records.read_record(folder)
    assert record["config"]["model"] in model_names(), f"{folder.name}: not a registered model"
    assert len(record["history"]) == record["results"]["epochs"], f"{folder.name}: history and results disagree"
    paths = [s for s in _strings(record["config"]) if s.startswith(("/", "~")) or re.match(r"[A-Za-z]:\\", s)]
    assert not paths, f"{folder.name}/config.json names paths of the machine that trained it: {paths}"


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_record_was_trained_with_its_models_registered_recipe(folder):
    """The notebooks and records/README.md say that `python -m minigru train --model NAME --data DIR` reproduces
    a record: so its model arguments and every recipe setting must be the registry's today (a recipe changed
    without new records fails here)."""
    config = normalise_config(records.read_record(folder)["config"])   # settings added since: their defaults
    name = config["model"]
    assert folder.name == name or folder.name.startswith(f"{name}-seed"), f"{folder.name}: not named after {name}"
    recipe = default_recipe(name)
    differ = {key: (config[key], value) for key, value in recipe.items() if config.get(key) != value}
    assert not differ, f"{folder.name}: recorded setting != registered recipe: {differ}"
    model = build_model(name, rng=0)
    registered = json.loads(json.dumps(model.config))
    # An argument added to the class after the run is absent from its record: it must be at its default then.
    defaults = {key: p.default for key, p in inspect.signature(type(model)).parameters.items()}
    recorded = {key: config["model_args"].get(key, defaults.get(key)) for key in registered}
    assert recorded == registered, f"{folder.name}: model arguments differ from the registry's"
    assert set(config["model_args"]) <= set(registered), f"{folder.name}: arguments the model no longer takes"


@pytest.mark.parametrize("folder", [p for p in SHIPPED if (p / records.WEIGHTS_FILE).is_file()], ids=lambda p: p.name)
def test_shipped_weights_are_small_float_and_rebuild_the_recorded_model(folder):
    """The weights alone (no optimizer state), in the run's own dtype (no silent float16), for the model that
    results.json describes."""
    weights = folder / records.WEIGHTS_FILE
    assert weights.stat().st_size <= records.MAX_WEIGHTS_BYTES
    checkpoint = read_checkpoint(weights)
    assert not checkpoint["optimizer"], f"{folder.name}: the record's checkpoint carries the optimizer state"
    model, config = load_trained(folder)
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    assert model.num_parameters() == results["parameters"]
    dtypes = {str(p.data.dtype) for p in model.parameters()}
    stored = {str(a.dtype) for a in checkpoint["model"].values() if np.issubdtype(a.dtype, np.floating)}
    assert stored == dtypes == {config["dtype"]}, f"{folder.name}: weights stored as {stored}, run in {config['dtype']}"


@pytest.mark.parametrize("notebook", ["03_cnn_gru_on_cifar10.ipynb", "05_inside_the_gru.ipynb"])
def test_the_notebooks_that_study_weights_find_them_in_a_shipped_record(notebook):
    """On a fresh clone, notebooks 3 and 5 study a real trained model (not only a short stand-in run): a model
    they look up (find_run / trained_weights) has a shipped record with weights, and notebook 3's command
    trains that same model."""
    cells = json.loads((ROOT / "notebooks" / notebook).read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    looked_up = set(re.findall(r'(?:find_run|trained_weights)\(\s*"([\w-]+)"', code))
    assert looked_up, f"{notebook} looks up no run"
    with_weights = {p.name for p in SHIPPED if (p / records.WEIGHTS_FILE).is_file()}
    assert looked_up & with_weights, f"{notebook} studies {sorted(looked_up)}; records with weights: {sorted(with_weights)}"
    if notebook.startswith("03_"):
        text = "\n".join("".join(c["source"]) for c in cells)
        commands = set(re.findall(r"python -m minigru train --model ([\w-]+)", text))
        assert commands and commands <= looked_up & with_weights, (commands, looked_up)
