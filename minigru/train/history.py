"""The record of a training run, one row per epoch, with JSON export and learning-curve plots.

>>> h = History()
>>> h.append(epoch=1, train_loss=2.1, train_accuracy=0.25, lr=0.1, seconds=3.2)
>>> h.train_loss
[2.1]
>>> h.val_loss          # None where there was no validation set
[None]
"""
from __future__ import annotations

import json
import math
import os
import re

from .._plotting import finish_figure, new_figure

__all__ = ["History", "plot_history"]

FIELDS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")
_METRIC_FIELD = re.compile(r"(train|val)_[a-z][a-z0-9_]*")


class History:
    """Per-epoch metrics as parallel lists: ``epoch``, ``train_loss``, ``train_accuracy``,
    ``val_loss``, ``val_accuracy`` (None for a model that is not a classifier), ``lr`` (of the
    first parameter group, at the start of the epoch) and ``seconds`` (wall time of the epoch,
    validation included), and a ``train_<name>``/``val_<name>`` pair for each further metric
    of the Trainer's metrics hook (:mod:`minigru.train.metric_hooks`), added when first recorded.
    """

    def __init__(self):
        self.fields = list(FIELDS)
        for name in FIELDS:
            setattr(self, name, [])

    def append(self, **record) -> dict:
        """Add one epoch; missing fields become None. Returns the full record.

        Names other than :data:`FIELDS` must look like ``train_<metric>`` or
        ``val_<metric>``: they start a new column (None for the earlier epochs);
        anything else raises (a typo would otherwise start a column of its own).
        """
        unknown = [name for name in record if name not in self.fields]
        wrong = [name for name in unknown if not _METRIC_FIELD.fullmatch(name)]
        if wrong:
            raise ValueError(f"unknown History field(s) {sorted(wrong)}; the fields are {tuple(self.fields)} and "
                             "train_<metric> / val_<metric>")
        for name in unknown:
            self.fields.append(name)
            setattr(self, name, [None] * len(self))
        full = {name: _plain_number(record.get(name)) for name in self.fields}
        for name in self.fields:
            getattr(self, name).append(full[name])
        return full

    def __len__(self):
        return len(self.epoch)

    def __getitem__(self, i) -> dict:
        """The record (a dict) of the ``i``-th stored epoch."""
        return {name: getattr(self, name)[i] for name in self.fields}

    def records(self) -> list[dict]:
        """One dict per epoch."""
        return [self[i] for i in range(len(self))]

    def best(self, metric: str = "val_accuracy") -> dict | None:
        """The record with the best ``metric`` (lowest for losses, highest otherwise), or None."""
        values = [(v, i) for i, v in enumerate(getattr(self, metric)) if v is not None and not math.isnan(v)]
        if not values:
            return None
        pick = min if "loss" in metric else max
        return self[pick(values)[1]]

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {name: list(getattr(self, name)) for name in self.fields}

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        history = cls()
        names = [name for name in data if name in FIELDS or _METRIC_FIELD.fullmatch(name)]
        lengths = {len(data[name]) for name in names}
        if len(lengths) > 1:
            raise ValueError(f"History lists have different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        for i in range(n):
            history.append(**{name: data[name][i] for name in names})
        return history

    def to_json(self, path=None) -> str:
        """The history as JSON text; also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            with open(os.fspath(path), "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text) -> "History":
        """Read a history written by :meth:`to_json` (a file path, or the JSON text itself)."""
        text = os.fspath(path_or_text)
        if not text.lstrip().startswith("{"):
            with open(text, encoding="utf-8") as f:
                text = f.read()
        return cls.from_dict(json.loads(text))

    def __eq__(self, other):
        return isinstance(other, History) and self.to_dict() == other.to_dict()

    def __repr__(self):
        if not len(self):
            return "History(no epochs)"
        last = self[-1]
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float))
        return f"History({len(self)} epochs; last: {shown})"


def _plain_number(v):
    """Python numbers only (NumPy/CuPy scalars and 0-d arrays converted), so the history is JSON-ready."""
    if v is None or isinstance(v, (int, float)):
        return v
    if hasattr(v, "item"):
        return v.item()
    return float(v)


def plot_history(history: History, path=None, title: str | None = None):
    """Learning curves: loss and accuracy per epoch (train and validation), plus the learning rate.

    With ``path`` the figure is written there (PNG, PDF, ... by extension)
    with matplotlib's Agg renderer, never touching the interactive backend
    (works on servers without a display). Without ``path`` the figure is
    made with pyplot, so that a notebook shows it. Returns the Figure.
    """
    if not len(history):
        raise ValueError("the history is empty: train at least one epoch before plotting")
    fig = new_figure((11, 3.4), path)
    axes = fig.subplots(1, 3)
    epochs = history.epoch
    for ax, metric, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = getattr(history, f"{split}_{metric}")
            points = [(e, v) for e, v in zip(epochs, values) if v is not None]
            if points:
                ax.plot(*zip(*points), style, markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:  # no accuracy for a model that is not a classifier
            ax.legend()
    lr_points = [(e, v) for e, v in zip(epochs, history.lr) if v is not None]
    if lr_points:
        axes[2].plot(*zip(*lr_points), "-o", markersize=3, color="tab:green")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("learning rate (epoch start)")
    axes[2].grid(alpha=0.3)
    return finish_figure(fig, path, title)
