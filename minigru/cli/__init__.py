"""The ``minigru`` command line (also ``python -m minigru``): train, evaluate, gradcheck, models.

Examples: ``minigru --help`` prints them (``minigru.cli.parser.EXAMPLES``, their one home).

Errors print one line (exit status 2; a run whose loss diverged: 1); set
MINIGRU_TRACEBACK=1 to see the full traceback.

``train`` writes into ``--out``: ``checkpoint.npz`` (after every epoch, atomically),
``history.json``, ``learning_curve.png``, ``config.json`` (the full resolved
configuration) and, at the end, ``results.json`` (test metrics).

The package, each module importing only those listed after it (no cycle):
``parser`` (arguments), ``train``, ``evaluate``, ``gradcheck``, ``models``
(one command each), ``run`` (config -> model, loaders, optimizer: :class:`~minigru.cli.run.Run`),
``datasets`` (CIFAR-10, shapes, image folders), ``threads`` (``--threads``) and
``common`` (errors, JSON, formats).
"""
from __future__ import annotations

import os
import sys

from .common import CLIError, TrainingDiverged
from .parser import build_parser

__all__ = ["main", "build_parser", "CLIError"]


def _user_errors() -> tuple:
    """The exceptions that mean "the input was wrong", printed as one line (no traceback)."""
    from .. import backend  # noqa: PLC0415  (imported with the commands, after the arguments parsed)
    from ..data import DatasetError, DatasetNotFoundError  # noqa: PLC0415
    from ..train import CheckpointError  # noqa: PLC0415
    return (CLIError, DatasetNotFoundError, DatasetError, CheckpointError, backend.BackendError, OSError,
            ValueError, TypeError, KeyError)


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError):
        return str(err.args[0])
    if isinstance(err, OSError) and err.strerror and err.filename:  # "[Errno 21] ..." -> the reason and the path
        return f"{err.strerror}: {err.filename!r}"
    return " ".join(str(err).split())  # one line, whatever the message holds


def main(argv=None) -> int:
    """Run the command line; returns the exit status: 0 ok, 1 a gradient check failed or the training
    loss diverged, 2 a usage or input error (one line on stderr), 130 interrupted."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:          # --help (0) or a one-line argument error (2)
        return int(done.code or 0)
    from .evaluate import cmd_evaluate  # noqa: PLC0415  (heavier imports only once arguments are valid)
    from .gradcheck import cmd_gradcheck  # noqa: PLC0415
    from .models import cmd_models  # noqa: PLC0415
    from .train import cmd_train  # noqa: PLC0415
    tune_process()
    handlers = {"train": cmd_train, "evaluate": cmd_evaluate, "gradcheck": cmd_gradcheck, "models": cmd_models}
    errors = _user_errors()
    try:
        return int(handlers[args.command](args) or 0)
    except KeyboardInterrupt:
        print("\nminigru: interrupted" + (" (the last completed epoch, if any, is in the run's checkpoint.npz; "
                                         "continue with --resume)" if args.command == "train" else ""),
              file=sys.stderr)
        return 130
    except TrainingDiverged as err:
        print(f"minigru {args.command}: error: {_message(err)}", file=sys.stderr)
        return 1
    except errors as err:
        if os.environ.get("MINIGRU_TRACEBACK"):  # for debugging: the full traceback instead of one line
            raise
        print(f"minigru {args.command}: error: {_message(err)}", file=sys.stderr)
        return 2


def tune_process() -> None:
    """Process-level speed settings: glibc keeps freed memory for reuse (:func:`minigru.perf.tune_host_memory`).

    A training step frees and re-allocates the same large arrays; without this,
    each fresh allocation pays a page fault per 4 KiB (~10% of a CNN step here).
    Results are unchanged.
    """
    from ..perf import tune_host_memory  # noqa: PLC0415
    tune_host_memory()
