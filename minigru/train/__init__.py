"""Training: the :class:`Trainer` loop, metrics, checkpoints and learning curves.

>>> from minigru.train import Trainer                                          # doctest: +SKIP
>>> trainer = Trainer(model, optim.Adam(model.parameters()), nn.CrossEntropyLoss())
>>> history = trainer.fit(train_loader, epochs=10, val_loader=val_loader, checkpoint_dir="runs/a")
>>> plot_history(history, "runs/a/curves.png")

See docs/user_guide.md for the user guide.
"""
from .checkpoint import (CheckpointError, LoadedCheckpoint, load_checkpoint, module_rngs, read_checkpoint,
                         save_checkpoint)
from .evaluation import evaluate
from .history import History, plot_history
from .metric_hooks import Accuracy, ConfusionMatrix, Metric
from .metrics import (accuracy, confusion_matrix, count_correct, format_confusion_matrix, per_class_accuracy,
                      predictions)
from .trainer import EvalResult, NonFiniteLossError, Trainer, fit

__all__ = ["Trainer", "fit", "evaluate", "EvalResult", "NonFiniteLossError", "Metric", "Accuracy", "ConfusionMatrix",
           "History", "plot_history",
           "save_checkpoint", "load_checkpoint", "read_checkpoint", "module_rngs", "CheckpointError",
           "LoadedCheckpoint", "accuracy", "confusion_matrix", "count_correct", "format_confusion_matrix",
           "per_class_accuracy", "predictions"]
