"""The argument parser of ``minigru``: its commands, options and one-line errors."""
from __future__ import annotations

import argparse
import sys

from .. import backend, engine
from ..data.augment import AUGMENTATIONS
from ..data.tta import TTA_CHOICES
from ..models import registry
from .common import finite_float

__all__ = ["build_parser", "DATASETS", "OPTIMIZERS", "SCHEDULES", "EXAMPLES"]

DATASETS = ("cifar10", "synthetic-shapes", "folder")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "linear", "cosine", "constant")

EXAMPLES = """
    minigru train --model cnn-gru-bn --data /tmp/cifar --out runs/bn     # the model's best known recipe
    minigru train --model row-gru --dataset synthetic-shapes --epochs 2   # offline, generated images
    minigru train --model cnn-gru --dataset folder --data photos/ --augment keras   # your own images
    minigru train --out runs/bn --resume                                  # continue an interrupted run exactly
    minigru train --out runs/bn --resume --epochs 30                      # extend a finished run
    minigru evaluate runs/bn/checkpoint.npz                               # loss, accuracy, confusion matrix
    minigru gradcheck                                                     # every layer against finite differences
    minigru models                                                        # the models and their recipes
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``minigru train: error: ...``), not the usage block.

    argparse's invalid-choice message already lists the valid choices; ``--help`` shows the usage.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def exit(self, status=0, message=None):
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


def _threads_option(group) -> None:
    group.add_argument("--threads", type=int, default=None, metavar="N",
                       help="BLAS threads (threadpoolctl); default 1, unless OPENBLAS_NUM_THREADS, OMP_NUM_THREADS "
                            "or MKL_NUM_THREADS is set; 0 keeps the BLAS library's own default (all cores)")


def _engine_option(group) -> None:
    group.add_argument("--engine", choices=engine.ENGINES, default=None,
                       help="elementwise engine: numpy (default, unless MINIGRU_ENGINE is set) or numba (compiled "
                            "GRU/LSTM gates, batch norm and SGD updates on --threads threads; pip install "
                            "'minigru[fast]')")


def _tta_option(group, default_text: str) -> None:
    group.add_argument("--tta", nargs="?", const="flip", choices=TTA_CHOICES, default=None,
                       help="test-time augmentation: average the class scores of views of each test image: "
                            f"flip (the image and its mirror; --tta alone), flip-translate, none ({default_text})")
    group.add_argument("--no-tta", dest="tta", action="store_const", const="none", help="same as --tta none")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minigru", description="minigru: train, evaluate and gradient-check "
                     "models whose backward passes are written by hand.",
                     epilog="examples:" + EXAMPLES.rstrip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{train,evaluate,gradcheck,models}", parser_class=_Parser)
    sub.required = True

    train = sub.add_parser("train", help="train a model (defaults: the model's best known recipe)")
    train.add_argument("--model", choices=registry.model_names(), help="model to train (required unless --resume)")
    train.add_argument("--out", default=None, help="run folder for checkpoint, history, curve and config "
                                                   "(default runs/<model>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped; with "
                                                             "a larger --epochs, extend a finished run")
    train.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    group = train.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, help="cifar10 (default), synthetic-shapes (generated) or "
                                                           "folder (your images in class sub-folders of --data)")
    group.add_argument("--data", default=None, help="CIFAR-10 folder (default $MINIGRU_DATA or ~/.cache/minigru), "
                                                    "or the image folder of --dataset folder")
    group.add_argument("--download", action="store_true", help="download CIFAR-10 if it is not found")
    group.add_argument("--limit-train", type=int, help="use only the first N training images")
    group.add_argument("--limit-test", type=int, help="evaluate on the first N test images only")
    group.add_argument("--val-split", type=finite_float, help="fraction of the training images held out for "
                                                              "validation")
    group.add_argument("--test-split", type=finite_float, help="--dataset folder without a test/ sub-folder: "
                                                               "fraction of the images held out for testing "
                                                               "(default 0.2, drawn with --seed)")
    group.add_argument("--augment", nargs="?", const="crop-flip", choices=AUGMENTATIONS, default=None,
                       help="training augmentation: crop-flip (random crop, padding 4, and horizontal flip; "
                            "--augment alone), translate-flip (airbench's: shifts of up to 2 pixels with a "
                            "reflected border, and flip), translate-altflip (the same shifts, each image mirrored "
                            "in every other epoch), keras (rotation, shift, shear, zoom and flip), flip, none")
    group.add_argument("--no-augment", dest="augment", action="store_const", const="none",
                       help="same as --augment none")
    group = train.add_argument_group("optimisation (defaults: the model's recipe, see `minigru models`)")
    group.add_argument("--epochs", type=int, help="epochs in total (with --resume: extends the run to this many)")
    group.add_argument("--batch-size", type=int)
    group.add_argument("--optimizer", choices=OPTIMIZERS)
    group.add_argument("--lr", type=finite_float, help="peak learning rate (one-cycle) or starting rate")
    group.add_argument("--momentum", type=finite_float)
    group.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                       help="Nesterov momentum with SGD (the recipes' default)")
    group.add_argument("--weight-decay", type=finite_float, help="L2 decay of weights (not of biases or batch norm)")
    group.add_argument("--bn-bias-lr-scale", type=finite_float, metavar="S",
                       help="batch norm's shifts train at S times the learning rate (airbench: 64)")
    group.add_argument("--freeze-bn-weight", action=argparse.BooleanOptionalAction, default=None,
                       help="keep batch norm's scales at 1 (airbench), training only its shifts")
    group.add_argument("--schedule", choices=SCHEDULES)
    group.add_argument("--pct-start", type=finite_float, help="fraction of the steps spent warming up (onecycle, "
                                                              "linear)")
    group.add_argument("--label-smoothing", type=finite_float)
    group.add_argument("--clip-grad-norm", type=finite_float)
    group.add_argument("--ema", type=finite_float, metavar="DECAY",
                       help="keep an exponential moving average of the weights (e.g. 0.99) and test with it")
    group.add_argument("--lookahead", action=argparse.BooleanOptionalAction, default=None,
                       help="airbench's lookahead: every 5 steps pull the weights towards a slow copy of them "
                            "(decay rising to 0.77), and end on the slow weights")
    _tta_option(group, "default: the recipe's")
    group = train.add_argument_group("model and machine")
    group.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="override a model argument, VALUE as JSON (e.g. --model-arg hidden_size=256)")
    group.add_argument("--seed", type=int, help="seed of the weights, shuffling and augmentation (default 0)")
    group.add_argument("--dtype", choices=("float32", "float64"))
    group.add_argument("--backend", choices=backend.BACKENDS, default=None, help="numpy (default) or cupy (GPU)")
    group.add_argument("--replicas", type=int, metavar="N",
                       help="split every batch over N copies of the model, one thread each (nn.DataParallel; "
                            "each copy's batch norm sees only its share); default: the recipe's")
    _threads_option(group)
    _engine_option(group)
    group.add_argument("--no-progress", action="store_true", help="one line per epoch instead of progress bars")

    evaluate = sub.add_parser("evaluate", help="test loss, accuracy, per-class accuracy and confusion matrix")
    evaluate.add_argument("checkpoint", help="a checkpoint written by `minigru train` (or its run folder)")
    evaluate.add_argument("--data", default=None, help="the data folder (default: the one the run was trained on)")
    evaluate.add_argument("--batch-size", type=int, default=500)
    evaluate.add_argument("--limit-test", type=int, help="evaluate on the first N test images only")
    _tta_option(evaluate, "default: as in training")
    evaluate.add_argument("--backend", choices=backend.BACKENDS, default=None)
    _threads_option(evaluate)
    _engine_option(evaluate)
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")

    check = sub.add_parser("gradcheck", help="gradient-check every layer and model in float64 (seconds)")
    check.add_argument("--only", default=None, help="check only entries whose name contains this text")
    check.add_argument("--tol", type=finite_float, default=1e-6, help="pass threshold on the max relative error")
    check.add_argument("--eps", type=finite_float, default=1e-5, help="finite-difference step")

    sub.add_parser("models", help="list the models, their sizes and training recipes")
    return parser
