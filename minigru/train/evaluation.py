"""Evaluation: the loss and metrics of a model on a loader, optionally with test-time augmentation.

:func:`evaluate` is the one evaluation loop of minigru: ``Trainer.evaluate``
(validation after every epoch) and ``minigru evaluate`` / the test score of
``minigru train`` call it. It runs the model in eval mode under ``no_grad``
(no backward caches), restores the training mode afterwards, and with
test-time augmentation (``tta=views``, see :mod:`minigru.data.tta`) averages
the model's outputs over the views. If one of the views is the identity, the
score of that view alone (the score *without* TTA) comes out of the same
pass as ``result.plain``: k views cost k forward passes, not k + 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.tta import Identity
from ..nn.module import no_grad
from .metric_hooks import Accuracy, ConfusionMatrix, resolve_metrics
from .progress import EpochProgress

__all__ = ["EvalResult", "evaluate", "batches"]


@dataclass(frozen=True)
class EvalResult:
    """Result of :func:`evaluate`: the mean ``loss``, every metric's result by name (``metrics``),
    the number of ``samples``, and with TTA over views that include the identity, ``plain``:
    the same figures from the identity view alone."""

    loss: float
    metrics: dict = field(default_factory=dict)
    samples: int = 0
    plain: "EvalResult | None" = None

    @property
    def accuracy(self) -> float | None:
        """The accuracy, or None when it was not measured (a model that is not a classifier)."""
        return self.metrics.get("accuracy")

    @property
    def confusion_matrix(self) -> np.ndarray | None:
        """The confusion matrix (NumPy int64, rows = true class), or None when not measured."""
        return self.metrics.get("confusion_matrix")


def batches(loader):
    """The ``(x, y)`` batches of ``loader``, with a clear error for anything else."""
    for i, batch in enumerate(loader):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TypeError(f"a loader must yield (x, y) pairs; batch {i} is a {type(batch).__name__}")
        yield batch


class _Accumulator:
    """Loss sum (kept on the device) and fresh copies of the metrics, for one score.

    When the confusion matrix is measured, the accuracy is its trace over the samples rather
    than a count of its own: on a GPU a pass then reads back two things at its end (the loss
    sum and the matrix), however many batches it has.
    """

    def __init__(self, loss_fn, metrics):
        self.loss_fn = loss_fn
        with_cm = any(isinstance(m, ConfusionMatrix) for m in metrics)
        self.accuracy_from_cm = with_cm and any(isinstance(m, Accuracy) for m in metrics)
        self.metrics = [m.fresh() for m in metrics if not (self.accuracy_from_cm and isinstance(m, Accuracy))]
        self.loss_sum, self.samples = 0.0, 0

    def update(self, outputs, y):
        n = int(y.shape[0])
        self.loss_sum = self.loss_sum + self.loss_fn(outputs, y) * n
        self.samples += n
        for m in self.metrics:
            m.update(outputs, y)

    def result(self, plain=None) -> EvalResult:
        values = {m.name: m.result() for m in self.metrics}
        if self.accuracy_from_cm:
            cm = values["confusion_matrix"]
            values = {"accuracy": float(np.trace(cm)) / self.samples, **values}
        return EvalResult(float(self.loss_sum) / self.samples, values, self.samples, plain)


def _check_views(tta, tta_weights):
    views = list(tta)
    if not views or not all(callable(v) for v in views):
        raise TypeError("tta must be a non-empty list of views, callables view(x) -> x (see minigru.data.tta)")
    weights = [1.0] * len(views) if tta_weights is None else [float(w) for w in tta_weights]
    if len(weights) != len(views) or min(weights) < 0 or not sum(weights) > 0:
        raise ValueError(f"tta_weights must be {len(views)} non-negative numbers with a positive sum, "
                         f"got {tta_weights}")
    total = sum(weights)
    return views, [w / total for w in weights]


def evaluate(model, loader, loss_fn, *, metrics="classification", tta=None, tta_weights=None, progress=False,
             description: str = "evaluate") -> EvalResult:
    """Mean loss and metrics of ``model`` on ``loader`` in eval mode, under ``no_grad``.

    Parameters
    ----------
    loss_fn : ``loss_fn(outputs, y)`` -> the batch's mean loss (e.g. ``nn.CrossEntropyLoss()``).
    metrics : ``"classification"`` (accuracy and confusion matrix), None (the loss alone) or a
        list of :class:`~minigru.train.metric_hooks.Metric` objects.
    tta : None, or a list of views ``view(x) -> x'`` (:mod:`minigru.data.tta`): the outputs of
        all views are averaged, weighted by ``tta_weights`` (default equal).
    progress : as the Trainer's: a bar over the batches (True, ``"text"``) or nothing (False).

    Returns an :class:`EvalResult`; with views that include an :class:`~minigru.data.tta.Identity`,
    ``result.plain`` holds the score without TTA, from the same pass.
    """
    metrics = resolve_metrics(metrics)
    views, weights = _check_views(tta, tta_weights) if tta is not None else (None, None)
    plain_view = next((i for i, v in enumerate(views) if isinstance(v, Identity)), None) if views else None
    score = _Accumulator(loss_fn, metrics)
    plain = _Accumulator(loss_fn, metrics) if plain_view is not None else None
    bar = EpochProgress(progress, len(loader) if hasattr(loader, "__len__") else None, description)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for x, y in batches(loader):
                if views is None:
                    outputs = model(x)
                else:
                    outputs = None
                    for i, (view, weight) in enumerate(zip(views, weights)):
                        out = model(view(x))
                        if i == plain_view:
                            plain.update(out, y)
                        out = out * out.dtype.type(weight)
                        outputs = out if outputs is None else outputs + out
                score.update(outputs, y)
                bar.update()
    except BaseException:
        bar.close("stopped")
        raise
    finally:
        model.train(was_training)
    if score.samples == 0:
        bar.close("no batches")
        raise ValueError("the evaluation loader yielded no batches")
    result = score.result(plain.result() if plain is not None else None)
    bar.close(summary(result))
    return result


def summary(result: EvalResult, prefix: str = "") -> str:
    """``"loss 0.1234, acc 87.65%"``: the loss and the scalar metrics (accuracy as a percentage)."""
    parts = [f"{prefix}loss {result.loss:.4f}"]
    for name, value in result.metrics.items():
        if isinstance(value, float):
            parts.append(f"{prefix}acc {100 * value:.2f}%" if name == "accuracy" else f"{prefix}{name} {value:.4g}")
    return ", ".join(parts)
