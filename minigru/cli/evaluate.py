"""``minigru evaluate``: a trained run's test loss, accuracy, per-class accuracy and confusion matrix.

The model, its normalisation, its data set and data folder all come from the
run configuration inside the checkpoint, so ``minigru evaluate
runs/NAME/checkpoint.npz`` needs nothing else; ``--data`` points elsewhere
when the data has moved.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..data import tta_views
from ..models import registry
from ..nn import CrossEntropyLoss
from ..train import evaluate
from ..train.metrics import format_confusion_matrix, per_class_accuracy
from .common import CLIError
from .datasets import describe_folder, load_data
from .run import eval_loader, normalise_config
from .threads import elementwise_engine, thread_limit

__all__ = ["cmd_evaluate", "report_evaluation"]


def report_evaluation(result, classes, tta: str) -> str:
    """Loss, accuracy, per-class accuracy and the confusion matrix of an EvalResult, as text."""
    cm = result.confusion_matrix
    names = [c[len("synthetic-"):] if c.startswith("synthetic-") else c for c in classes]
    width = max(len(n) for n in names)
    lines = [f"test loss {result.loss:.4f}, test accuracy {100 * result.accuracy:.2f}% on {int(cm.sum())} images"
             + (f" (test-time augmentation: {tta})" if tta != "none" else ""), "per-class accuracy:"]
    for name, a in zip(names, per_class_accuracy(cm)):
        lines.append(f"  {name:<{width}}  {'n/a' if np.isnan(a) else f'{100 * a:5.1f}%'}")
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines.append(format_confusion_matrix(cm, [n[:6] for n in names]))
    return "\n".join(lines)


def cmd_evaluate(args) -> int:
    if args.backend:
        backend.set_backend(args.backend)
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit_test is not None and args.limit_test < 1:
        raise CLIError(f"--limit-test must be >= 1, got {args.limit_test}")
    try:
        model, config = registry.load_trained(args.checkpoint)
    except ValueError as err:           # no run configuration inside: say so in one line
        raise CLIError(str(err)) from None
    normalise_config(config)
    if args.limit_test is not None:
        config["limit_test"] = args.limit_test
    with thread_limit(args.threads) as threads_text, elementwise_engine(args.engine, args.threads) as engine_text:
        data = load_data(config, args.data, need_train=False)   # a missing folder: an error naming --data
        tta = config["tta"] if args.tta is None else args.tta
        views, weights = tta_views(tta)
        print(f"{config['model']} from {args.checkpoint}, {config['dataset']} test set "
              f"({describe_folder(data.folder)}), {threads_text}{engine_text}", flush=True)
        result = evaluate(model, eval_loader(config, data.test, args.batch_size), CrossEntropyLoss(), tta=views,
                          tta_weights=weights, progress=not args.no_progress, description="test")
    print(report_evaluation(result, data.classes, tta))
    if result.plain is not None:
        print(f"without test-time augmentation: test loss {result.plain.loss:.4f}, "
              f"test accuracy {100 * result.plain.accuracy:.2f}%")
    return 0
