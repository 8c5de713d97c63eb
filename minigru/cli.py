"""The ``minigru`` command line (also ``python -m minigru``): train, evaluate, gradcheck, models.

::

    minigru train --model cnn-gru-bn --data /tmp/cifar --out runs/bn     # the model's best known recipe
    minigru train --model row-gru --dataset synthetic-shapes --epochs 2   # offline, generated images
    minigru train --out runs/bn --resume                                  # continue an interrupted run exactly
    minigru evaluate runs/bn/checkpoint.npz --data /tmp/cifar             # loss, accuracy, confusion matrix
    minigru gradcheck                                                     # every layer against finite differences
    minigru models                                                        # the models and their recipes

Errors print one line; set MINIGRU_TRACEBACK=1 to see the full traceback.

``train`` writes into ``--out``: ``checkpoint.npz`` (after every epoch, atomically),
``history.json``, ``learning_curve.png``, ``config.json`` (the full resolved
configuration) and, at the end, ``results.json`` (test metrics).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import backend
from .models import registry

__all__ = ["main", "build_parser"]

DATASETS = ("cifar10", "synthetic-shapes")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "linear", "cosine", "constant")


class CLIError(Exception):
    """A problem the user can fix (bad argument, missing data, ...): printed without a traceback."""


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    examples = __doc__.split("::")[1].split("``train`` writes")[0]
    parser = argparse.ArgumentParser(prog="minigru", description="minigru: train, evaluate and gradient-check "
                                     "models whose backward passes are written by hand.",
                                     epilog="examples:" + examples.rstrip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{train,evaluate,gradcheck,models}")
    sub.required = True

    train = sub.add_parser("train", help="train a model (defaults: the model's best known recipe)")
    train.add_argument("--model", choices=registry.model_names(), help="model to train (required unless --resume)")
    train.add_argument("--out", default=None, help="run folder for checkpoint, history, curve and config "
                                                   "(default runs/<model>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    train.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    group = train.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, help="cifar10 (default) or synthetic-shapes (generated)")
    group.add_argument("--data", default=None, help="CIFAR-10 folder (default $MINIGRU_DATA or ~/.cache/minigru)")
    group.add_argument("--download", action="store_true", help="download CIFAR-10 if it is not found")
    group.add_argument("--limit-train", type=int, help="use only the first N training images")
    group.add_argument("--limit-test", type=int, help="evaluate on the first N test images only")
    group.add_argument("--val-split", type=float, help="fraction of the training images held out for validation")
    group.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                       help="random crop (padding 4) and horizontal flip")
    group = train.add_argument_group("optimisation (defaults: the model's recipe, see `minigru models`)")
    group.add_argument("--epochs", type=int)
    group.add_argument("--batch-size", type=int)
    group.add_argument("--optimizer", choices=OPTIMIZERS)
    group.add_argument("--lr", type=float, help="peak learning rate (one-cycle) or starting rate")
    group.add_argument("--momentum", type=float)
    group.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                       help="Nesterov momentum with SGD (the recipes' default)")
    group.add_argument("--weight-decay", type=float, help="L2 decay of weights (not of biases or batch norm)")
    group.add_argument("--schedule", choices=SCHEDULES)
    group.add_argument("--pct-start", type=float, help="fraction of the steps spent warming up (onecycle, linear)")
    group.add_argument("--label-smoothing", type=float)
    group.add_argument("--clip-grad-norm", type=float)
    group.add_argument("--ema", type=float, metavar="DECAY",
                       help="keep an exponential moving average of the weights (e.g. 0.99) and test with it")
    group.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                       help="test-time augmentation: average the logits of each test image and its mirror")
    group = train.add_argument_group("model and machine")
    group.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="override a model argument, VALUE as JSON (e.g. --model-arg hidden_size=256)")
    group.add_argument("--seed", type=int, help="seed of the weights, shuffling and augmentation (default 0)")
    group.add_argument("--dtype", choices=("float32", "float64"))
    group.add_argument("--backend", choices=backend.BACKENDS, default=None, help="numpy (default) or cupy (GPU)")
    group.add_argument("--no-progress", action="store_true", help="one line per epoch instead of progress bars")

    evaluate = sub.add_parser("evaluate", help="test loss, accuracy, per-class accuracy and confusion matrix")
    evaluate.add_argument("checkpoint", help="a checkpoint written by `minigru train`")
    evaluate.add_argument("--data", default=None, help="CIFAR-10 folder (default: as in training)")
    evaluate.add_argument("--batch-size", type=int, default=500)
    evaluate.add_argument("--limit-test", type=int, help="evaluate on the first N test images only")
    evaluate.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                          help="average with the mirrored image (default: as in training)")
    evaluate.add_argument("--backend", choices=backend.BACKENDS, default=None)

    check = sub.add_parser("gradcheck", help="gradient-check every layer and model in float64 (seconds)")
    check.add_argument("--only", default=None, help="check only entries whose name contains this text")
    check.add_argument("--tol", type=float, default=1e-6, help="pass threshold on the max relative error")
    check.add_argument("--eps", type=float, default=1e-5, help="finite-difference step")

    sub.add_parser("models", help="list the models, their sizes and training recipes")
    return parser


# ------------------------------------------------------------------ entry point
def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a gradient check failed, 2 an error)."""
    args = build_parser().parse_args(argv)
    from . import cli_commands as commands  # noqa: PLC0415  (heavier imports only once arguments are valid)
    from .cli_gradcheck import cmd_gradcheck  # noqa: PLC0415
    tune_process()
    handlers = {"train": commands.cmd_train, "evaluate": commands.cmd_evaluate,
                "gradcheck": cmd_gradcheck, "models": commands.cmd_models}
    try:
        return int(handlers[args.command](args) or 0)
    except KeyboardInterrupt:
        print("\nminigru: interrupted" + (" (the last completed epoch, if any, is in the run's checkpoint.npz; "
                                         "continue with --resume)" if args.command == "train" else ""),
              file=sys.stderr)
        return 130
    except commands.USER_ERRORS as err:
        if os.environ.get("MINIGRU_TRACEBACK"):  # for debugging: the full traceback instead of one line
            raise
        message = str(err) if not isinstance(err, KeyError) else str(err.args[0])
        print(f"minigru {args.command}: error: {message}", file=sys.stderr)
        return 2


def tune_process() -> None:
    """Process-level speed settings: glibc keeps freed memory for reuse (:func:`minigru.perf.tune_host_memory`).

    A training step frees and re-allocates the same large arrays; without this,
    each fresh allocation pays a page fault per 4 KiB (~10% of a CNN step here).
    Results are unchanged.
    """
    from .perf import tune_host_memory  # noqa: PLC0415
    tune_host_memory()


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
