"""The Trainer's metrics hook: what it measures besides the loss, batch by batch.

A metric accumulates over the batches of one pass (a training epoch, or one
evaluation) and gives one result at the end::

    metric.reset()                       # a new pass
    metric.update(outputs, targets)      # after every batch, on the batch's device
    metric.result()                      # at the end: a float (or an array)

``Trainer(..., metrics="classification")`` (the default) measures the accuracy
of every training epoch and evaluation, and the confusion matrix in
evaluation only; ``metrics=None`` measures the loss alone (a next-frame
predictor, a regression); a list of :class:`Metric` objects measures those.
Scalar results go into the History as ``train_<name>`` and ``val_<name>``.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import backend
from .metrics import confusion_matrix, count_correct

__all__ = ["Metric", "Accuracy", "ConfusionMatrix", "classification_metrics", "resolve_metrics"]


class Metric:
    """Base class of a metric accumulated over batches (see the module docstring).

    Class attributes: ``name`` (the History column after ``train_``/``val_``),
    ``higher_is_better`` (for choosing the best checkpoint), ``during_training``
    (False: measured by ``evaluate`` only, e.g. because it is costly or not a
    number), ``scalar`` (True: ``result()`` is a float that the History records).
    """

    name = "metric"
    higher_is_better = True
    during_training = True
    scalar = True

    def reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define reset()")

    def update(self, outputs, targets) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define update(outputs, targets)")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} must define result()")

    def fresh(self) -> "Metric":
        """A reset copy: each pass (and each TTA view) accumulates into its own."""
        new = copy.deepcopy(self)
        new.reset()
        return new


class Accuracy(Metric):
    """Fraction of samples whose largest class score is the true class; counted on the device."""

    name = "accuracy"

    def reset(self) -> None:
        self.correct, self.samples = 0, 0

    def update(self, outputs, targets) -> None:
        self.correct = self.correct + count_correct(outputs, targets)  # a 0-d device array: no host copy
        self.samples += int(targets.shape[0])

    def result(self) -> float:
        if self.samples == 0:
            raise ValueError("accuracy of no samples is undefined")
        return int(self.correct) / self.samples


class ConfusionMatrix(Metric):
    """``cm[i, j]``: samples of true class i predicted as j (NumPy int64 (K, K)); evaluation only.

    Batches are counted without checking the labels' range (``check=False``: on a GPU the check
    reads values back every batch); labels out of range are not counted, which ``result()``
    notices once, comparing the count with the number of samples.
    """

    name = "confusion_matrix"
    during_training = False
    scalar = False

    def reset(self) -> None:
        self.cm, self.samples = None, 0

    def update(self, outputs, targets) -> None:
        batch = confusion_matrix(targets, outputs, num_classes=outputs.shape[1], check=False)
        self.cm = batch if self.cm is None else self.cm + batch
        self.samples += int(targets.shape[0])

    def result(self) -> np.ndarray:
        if self.cm is None:
            raise ValueError("confusion matrix of no samples is undefined")
        cm = backend.to_numpy(self.cm)
        if int(cm.sum()) != self.samples:
            raise ValueError(f"{self.samples - int(cm.sum())} of {self.samples} evaluation labels are not class "
                             f"indices in [0, {len(cm) - 1}]")
        return cm


def classification_metrics() -> list[Metric]:
    """Accuracy (training and evaluation) and the confusion matrix (evaluation)."""
    return [Accuracy(), ConfusionMatrix()]


def resolve_metrics(metrics) -> list[Metric]:
    """``"classification"``, None (the loss alone) or a list of :class:`Metric` -> a list of metrics."""
    if isinstance(metrics, str):
        if metrics != "classification":
            raise ValueError(f"metrics must be 'classification', None or a list of Metric objects, got {metrics!r}")
        return classification_metrics()
    if metrics is None:
        return []
    metrics = list(metrics)
    for m in metrics:
        if not isinstance(m, Metric):
            raise TypeError(f"metrics must be Metric objects (reset/update/result), got {type(m).__name__}")
    names = [m.name for m in metrics]
    if len(set(names)) != len(names) or "loss" in names:
        raise ValueError(f"metric names must be distinct and not 'loss', got {names}")
    return metrics
