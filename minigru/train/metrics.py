"""Classification metrics: accuracy, the confusion matrix, per-class accuracy and a text rendering.

The counting runs on the arrays' backend (NumPy or CuPy) and, on a GPU,
without reading values back; only the final small results come back to the
host. Rows of a confusion matrix are the true classes, columns the predicted
ones (as scikit-learn and torchmetrics)::

    >>> cm = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), num_classes=3)
    >>> cm
    array([[1, 0, 0],
           [0, 1, 1],
           [0, 0, 1]])
"""
from __future__ import annotations

import numpy as np

from .. import backend

__all__ = ["predictions", "count_correct", "accuracy", "confusion_matrix", "per_class_accuracy",
           "format_confusion_matrix"]


def predictions(logits):
    """Predicted classes ``(N,)``: the index of the largest score in each row of ``logits`` ``(N, K)``."""
    if logits.ndim != 2:
        raise ValueError(f"expected class scores of shape (N, K), got {tuple(logits.shape)}")
    return logits.argmax(axis=1)


def _as_predictions(scores_or_classes, y):
    """Accept either scores ``(N, K)`` or already predicted classes ``(N,)``."""
    if scores_or_classes.ndim == y.ndim + 1:
        return predictions(scores_or_classes)
    return scores_or_classes


def _check_labels(y, name="y"):
    if np.dtype(y.dtype).kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name} must be a vector of class labels (N,), got shape {tuple(y.shape)}")


def count_correct(scores_or_classes, y):
    """Number of correct predictions, as a 0-d array on the inputs' backend (no copy to the host)."""
    pred = _as_predictions(scores_or_classes, y)
    if pred.shape != y.shape:
        raise ValueError(f"{pred.shape[0]} predictions for {y.shape[0]} labels")
    return (pred == y).sum()


def accuracy(scores_or_classes, y) -> float:
    """Fraction of correct predictions; pass class scores ``(N, K)`` or predicted classes ``(N,)``."""
    _check_labels(y)
    if y.shape[0] == 0:
        raise ValueError("accuracy of an empty batch is undefined")
    return float(count_correct(scores_or_classes, y)) / y.shape[0]


def confusion_matrix(y_true, y_pred, num_classes: int, check: bool = True):
    """``cm[i, j]`` = number of samples of true class ``i`` predicted as class ``j``.

    ``y_true`` and ``y_pred`` are integer vectors ``(N,)`` on one backend
    (``y_pred`` may also be class scores ``(N, K)``). Returns an int64 array
    ``(num_classes, num_classes)`` on that backend.

    On the host one ``bincount`` of ``num_classes · y_true + y_pred`` counts
    every pair at once. On a GPU ``bincount`` reads the largest code back to
    size its result (a host sync), so the pairs are counted with a product of
    one-hot matrices instead, which stays on the device. ``check`` verifies
    that all labels lie in ``[0, num_classes - 1]``, which on a GPU costs one
    sync; with ``check=False`` labels out of range are not counted there, and
    a caller that sums many batches compares ``cm.sum()`` with the number of
    samples once at the end (as :meth:`minigru.train.Trainer.evaluate` does).
    """
    y_pred = _as_predictions(y_pred, y_true)
    _check_labels(y_true, "y_true")
    _check_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {tuple(y_true.shape)} but y_pred has {tuple(y_pred.shape)}")
    xp = backend.get_array_module(y_true, y_pred)
    k = int(num_classes)
    on_host = backend.values_on_host(y_true, y_pred)
    if y_true.size and (check or on_host):
        low, high = (int(v) for v in backend.to_numpy(xp.stack([xp.minimum(y_true.min(), y_pred.min()),
                                                                 xp.maximum(y_true.max(), y_pred.max())])))
        if low < 0 or high >= k:
            raise ValueError(f"class labels must lie in [0, {k - 1}] for num_classes={k}, found values from "
                             f"{low} to {high}")
    if on_host:
        codes = y_true.astype(np.int64) * k + y_pred.astype(np.int64)
        return xp.bincount(codes, minlength=k * k).reshape(k, k).astype(np.int64, copy=False)
    classes = xp.arange(k)
    # float64 one-hot rows: the products count exactly up to 2**53 samples per batch
    true_onehot = (y_true[:, None] == classes).astype(np.float64)
    pred_onehot = (y_pred[:, None] == classes).astype(np.float64)
    return (true_onehot.T @ pred_onehot).astype(np.int64)


def per_class_accuracy(cm) -> np.ndarray:
    """Recall of each class, ``cm[i, i] / cm[i, :].sum()`` (a NumPy array); NaN for a class with no samples."""
    cm = backend.to_numpy(cm).astype(np.float64)
    support = cm.sum(axis=1)
    return np.divide(np.diag(cm), support, out=np.full(len(cm), np.nan), where=support > 0)


def format_confusion_matrix(cm, class_names=None, width: int = 6) -> str:
    """A text table of ``cm`` (rows: true class, columns: predicted), with each class's accuracy at the end.

    ``class_names`` (default ``0, 1, ...``) are cut to ``width`` characters in
    the header; the total accuracy is printed underneath.
    """
    cm = backend.to_numpy(cm)
    k = cm.shape[0]
    if cm.shape != (k, k):
        raise ValueError(f"a confusion matrix is square, got shape {cm.shape}")
    names = [str(n) for n in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}-class confusion matrix")
    width = max(width, len(str(int(cm.max()))) if cm.size else 1)
    corner = "true \\ pred"
    row_label = max(len(corner), *(len(n) for n in names))
    header = f"{corner:<{row_label}} " + " ".join(f"{n[:width]:>{width}}" for n in names) + "   acc"
    lines = [header]
    for name, row, acc in zip(names, cm, per_class_accuracy(cm)):
        cells = " ".join(f"{int(c):>{width}d}" for c in row)
        lines.append(f"{name:<{row_label}} {cells}  " + ("  n/a" if np.isnan(acc) else f"{100 * acc:5.1f}%"))
    total = cm.sum()
    overall = f"{100 * np.trace(cm) / total:.2f}%" if total else "n/a"
    lines.append(f"overall accuracy {overall} on {int(total)} samples")
    return "\n".join(lines)
