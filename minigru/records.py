"""Run records: the small part of a ``minigru train`` run folder, kept in the repository.

A run folder (``runs/NAME``, not in git) holds ``config.json``, ``history.json``, ``results.json``,
``learning_curve.png`` and ``checkpoint.npz`` (the weights with the optimizer state: megabytes).
A *record* keeps the three JSON files, which are enough to redraw a run's learning curves and
tables, and, on request, the trained weights alone (a ``checkpoint.npz`` without optimizer state,
which :func:`minigru.models.load_trained` reads like a run's). Notebooks 3-5 read the records in
``notebooks/records/``, so that their figures come out the same on a fresh clone.

Adding a record is one command, from the repository root, after the run has finished::

    python -m minigru.records runs/cnn-gru-fast              # -> notebooks/records/cnn-gru-fast/
    python -m minigru.records runs/cnn-gru-fast --weights    # also the trained weights (float32)

Absolute paths in the run's configuration (where the data was on the machine that trained it)
are not copied: they mean nothing on another machine. The command prints what it removed.

>>> record = read_record("notebooks/records/cnn-gru-fast")              # doctest: +SKIP
>>> record["results"]["test_accuracy"], len(record["history"])           # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["RECORD_FILES", "WEIGHTS_FILE", "DEFAULT_RECORDS", "MAX_WEIGHTS_BYTES", "write_record", "read_record",
           "find_run", "RecordError", "main"]

RECORD_FILES = ("config.json", "history.json", "results.json")
WEIGHTS_FILE = "checkpoint.npz"
DEFAULT_RECORDS = os.path.join("notebooks", "records")
MAX_WEIGHTS_BYTES = 8_000_000    # a record is part of every clone: a few MB at most


class RecordError(ValueError):
    """A run folder that cannot become a record, or a record that cannot be read (the message says why)."""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path} is missing") from None
    except json.JSONDecodeError as err:
        raise RecordError(f"{path} is not valid JSON ({err})") from None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _without_machine_paths(value, where="config"):
    """``value`` with every absolute path replaced by None, and the places where that happened."""
    if isinstance(value, dict):
        cleaned, removed = {}, []
        for key, item in value.items():
            cleaned[key], inner = _without_machine_paths(item, f"{where}.{key}")
            removed += inner
        return cleaned, removed
    if isinstance(value, list):
        pairs = [_without_machine_paths(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return [item for item, _ in pairs], [r for _, inner in pairs for r in inner]
    if isinstance(value, str) and (os.path.isabs(value) or value.startswith("~")):
        return None, [f"{where} = {value!r}"]
    return value, []


def read_record(folder) -> dict:
    """A record or a finished run folder: ``{"name", "folder", "config", "history", "results", "weights"}``.

    ``history`` is a :class:`~minigru.train.History`; ``weights`` is the path of the folder's
    ``checkpoint.npz``, or None when it has none. Raises :class:`RecordError` if a JSON file is
    missing or malformed.
    """
    from .train import History  # noqa: PLC0415  (minigru.train is loaded on demand)

    folder = Path(folder)
    config, results = _read_json(folder / "config.json"), _read_json(folder / "results.json")
    try:
        history = History.from_json(folder / "history.json")
    except FileNotFoundError:
        raise RecordError(f"{folder / 'history.json'} is missing") from None
    except (ValueError, TypeError) as err:
        raise RecordError(f"{folder / 'history.json'} is not a training history ({err})") from None
    for key in ("model", "model_args", "dtype"):
        if key not in config:
            raise RecordError(f"{folder / 'config.json'} has no {key!r}: not written by `minigru train`")
    if "test_accuracy" not in results:
        raise RecordError(f"{folder / 'results.json'} has no 'test_accuracy': not written by `minigru train`")
    weights = folder / WEIGHTS_FILE
    return {"name": folder.name, "folder": folder, "config": config, "history": history, "results": results,
            "weights": weights if weights.is_file() else None}


def find_run(name, records="records", runs=None):
    """The finished run ``name``: ``(read_record(...), where)``, or ``(None, None)`` if there is none.

    A run folder ``runs/name`` of your own comes first (it has the weights), then the record
    ``records/name``. ``where`` names the folder by its last two parts only (``"records/cnn-gru-bn"``),
    so that a notebook's saved output shows no path of the machine that ran it.
    """
    for kind, root in (("run folder", runs), ("record", records)):
        if root is not None and (Path(root) / name / "results.json").is_file():
            return read_record(Path(root) / name), f"{kind} {Path(root).resolve().name}/{name}"
    return None, None


def write_record(run_dir, records_dir=DEFAULT_RECORDS, *, name=None, weights=False) -> dict:
    """Copy the record of the finished run in ``run_dir`` to ``records_dir/name`` (default: the run's name).

    Returns ``{"folder": Path, "removed": [...], "weights_bytes": int or None}``; ``removed`` lists
    the absolute paths left out of ``config.json``. With ``weights`` the trained weights are saved too,
    without the optimizer state; above :data:`MAX_WEIGHTS_BYTES` that raises :class:`RecordError`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RecordError(f"{run_dir} is not a folder (give the run folder of `minigru train --out ...`)")
    if not (run_dir / "results.json").is_file():
        raise RecordError(f"{run_dir} holds no results.json: the run has not finished (continue it with "
                          f"`python -m minigru train --out {run_dir} --resume`)")
    run = read_record(run_dir)                       # checks the three files before anything is written
    config, removed = _without_machine_paths(run["config"])
    target = Path(records_dir) / (name or run_dir.resolve().name)
    target.mkdir(parents=True, exist_ok=True)
    _write_json(target / "config.json", config)
    _write_json(target / "history.json", run["history"].to_dict())
    _write_json(target / "results.json", run["results"])
    size = None
    if weights:
        size = _write_weights(run_dir, target / WEIGHTS_FILE, config)
    elif (target / WEIGHTS_FILE).exists():
        (target / WEIGHTS_FILE).unlink()             # weights of an earlier run would not match this record
    return {"folder": target, "removed": removed, "weights_bytes": size}


def _write_weights(run_dir: Path, path: Path, config: dict) -> int:
    from .models import load_trained  # noqa: PLC0415
    from .train import read_checkpoint, save_checkpoint  # noqa: PLC0415

    if not (run_dir / WEIGHTS_FILE).is_file():
        raise RecordError(f"{run_dir} has no {WEIGHTS_FILE}: there are no weights to record")
    model, _ = load_trained(run_dir)
    epoch = read_checkpoint(run_dir / WEIGHTS_FILE)["epoch"]
    save_checkpoint(path, model, epoch=epoch, extra={"config": config})
    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        path.unlink()
        raise RecordError(f"the weights of {config['model']} take {size / 1e6:.1f} MB, more than the "
                          f"{MAX_WEIGHTS_BYTES / 1e6:.0f} MB a record may add to every clone; record it without "
                          "--weights")
    return size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m minigru.records",
        description="Copy the small part of a finished `minigru train` run (config, history, results; "
                    "optionally the weights) into the repository's records, where notebooks 3-5 read it.")
    parser.add_argument("run", help="the run folder, e.g. runs/cnn-gru-fast")
    parser.add_argument("--to", default=DEFAULT_RECORDS, help=f"the records folder (default {DEFAULT_RECORDS})")
    parser.add_argument("--name", help="the record's name (default: the run folder's name)")
    parser.add_argument("--weights", action="store_true",
                        help=f"also store the trained weights (refused above {MAX_WEIGHTS_BYTES / 1e6:.0f} MB)")
    args = parser.parse_args(argv)
    try:
        done = write_record(args.run, args.to, name=args.name, weights=args.weights)
    except RecordError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for entry in done["removed"]:
        print(f"left out (a path on this machine): {entry}")
    files = list(RECORD_FILES) + ([f"{WEIGHTS_FILE} ({done['weights_bytes'] / 1e6:.1f} MB)"]
                                  if done["weights_bytes"] else [])
    print(f"record written to {done['folder']}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
