"""What every command of :mod:`minigru.cli` shares: the user-error class, JSON writing, number formats.

This module imports nothing from the rest of the CLI package, so every other
module can import it (the package's imports form no cycle: ``__init__`` ->
``parser`` and the command modules -> ``run`` -> ``common``).
"""
from __future__ import annotations

import json
import math
import os

__all__ = ["CLIError", "TrainingDiverged", "write_json", "format_seconds", "plural", "finite_float", "parse_model_args"]


class CLIError(Exception):
    """A problem the user can fix (bad argument, missing data, ...): printed as one line, without a traceback."""


class TrainingDiverged(Exception):
    """The training loss became NaN or infinite: reported in one line with exit status 1 (the arguments
    were valid; the run failed), the last good checkpoint kept."""


def finite_float(text: str) -> float:
    """argparse type of every float option: a number, but not NaN or infinite (``--lr inf`` would
    write NaN weights). The message becomes ``argument --lr: must be a finite number, got 'inf'``."""
    import argparse  # noqa: PLC0415  (argparse is only needed while parsing)
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def parse_model_args(pairs) -> dict:
    """``["hidden_size=256", "widths=[64,128]"]`` -> ``{"hidden_size": 256, "widths": [64, 128]}``."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--model-arg expects KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text  # a bare word, e.g. readout=mean
        if isinstance(value, float) and not math.isfinite(value):
            raise CLIError(f"--model-arg {key.strip()} must be a finite number, got {text!r}")
        out[key.strip()] = value
    return out


def write_json(path, data) -> None:
    """Write ``data`` as indented JSON (via a temporary file, so a crash leaves no half-written file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def plural(count: int, noun: str) -> str:
    """``plural(1, "epoch")`` -> ``"1 epoch"``, ``plural(3, "epoch")`` -> ``"3 epochs"``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
