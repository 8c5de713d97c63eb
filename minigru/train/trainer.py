"""The training loop: :class:`Trainer` and the :func:`fit` shortcut.

One training step (see :meth:`Trainer.train_step`) is the whole algorithm::

    model.train()
    optimizer.zero_grad()                 # forget the last batch's gradients
    logits = model(x)                     # forward: class scores (N, K)
    loss = loss_fn(logits, y)             # mean loss of the batch (cross-entropy for a classifier)
    dlogits = loss_fn.backward()          # dL/dlogits (N, K)
    model.backward(dlogits)               # every layer adds dL/dw into w.grad
    clip_grad_norm_(params, max_norm)     # optional
    optimizer.step()                      # w <- w - update
    scheduler.step()                      # per batch (OneCycleLR) or per epoch

The Trainer adds what a real run needs around it: epoch averages, metrics
(a hook: accuracy for classifiers, nothing or your own for other models),
validation under ``no_grad`` with optional test-time augmentation
(:mod:`minigru.train.evaluation`), a History, progress bars, a clear stop on
a NaN loss, checkpoints, and exact resumption from them.
"""
from __future__ import annotations

import collections
import math
import os
import time
import warnings

import numpy as np

from .. import backend
from ..nn.parallel import DataParallel
from ..optim.clip import clip_grad_norm_
from ..optim.lr_scheduler import OneCycleLR
from . import checkpoint as ckpt
from .evaluation import EvalResult, batches, evaluate, summary
from .history import History
from .metric_hooks import resolve_metrics
from .progress import EpochProgress

__all__ = ["Trainer", "fit", "EvalResult", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class Trainer:
    """Trains a model: ``Trainer(model, optimizer, loss_fn).fit(train_loader, epochs=10, val_loader=val)``.

    Parameters
    ----------
    model : Module mapping a batch ``x`` to outputs (class scores ``(N, K)`` for a classifier).
    optimizer : a :mod:`minigru.optim` optimizer over the model's parameters.
    loss_fn : called as ``loss_fn(outputs, y)`` (a scalar mean loss), then
        ``loss_fn.backward()`` returns ``dL/doutputs`` (e.g. ``nn.CrossEntropyLoss()``, ``nn.MSELoss()``).
    metrics : the metrics hook (:mod:`minigru.train.metric_hooks`): ``"classification"``
        (default: accuracy per epoch, and the confusion matrix in :meth:`evaluate`), None
        (the loss alone, for a model that is not a classifier) or a list of ``Metric`` objects.
    scheduler : optional LR scheduler.
    scheduler_step : ``"epoch"`` or ``"batch"``: when to call ``scheduler.step()``;
        by default ``"batch"`` for OneCycleLR and ``"epoch"`` for the others.
    clip_grad_norm : if given, gradients are rescaled to this total 2-norm before each step.
    progress : True shows a progress bar per epoch (tqdm: a widget in Jupyter, text in a terminal);
        ``"text"`` always draws the text bar (it stays readable in a saved notebook); False prints nothing.
    on_epoch_end : a function ``f(trainer, record)`` or a list of them, called after
        every epoch with that epoch's History record; set ``trainer.stop_training = True``
        inside one to stop (early stopping).
    on_batch_end : a function ``f(trainer, loss)`` or a list of them, called after every
        training batch with its loss (a float).
    replicas : split every batch over this many copies of the model, one thread each
        (:class:`~minigru.nn.DataParallel`; default 1: the model alone). The copies share the
        model's weights; a batch norm then normalises each chunk with its own statistics.
        ``trainer.model`` stays the model itself (optimizer, checkpoints); ``trainer.net`` runs it.
    monitor : what decides the "best" checkpoint: ``"val_loss"``, ``"train_loss"``, or
        ``"val_<metric>"`` / ``"train_<metric>"`` for a scalar metric (``"val_accuracy"``);
        default ``"val_accuracy"`` when accuracy is measured, else ``"val_loss"``. Without a
        validation loader ``val_*`` falls back to ``train_*``.
    """

    def __init__(self, model, optimizer, loss_fn, scheduler=None, scheduler_step=None, clip_grad_norm=None,
                 progress=True, on_epoch_end=None, monitor=None, metrics="classification", on_batch_end=None,
                 replicas=1):
        if scheduler_step is None:
            scheduler_step = "batch" if isinstance(scheduler, OneCycleLR) else "epoch"
        if scheduler_step not in ("epoch", "batch"):
            raise ValueError(f"scheduler_step must be 'epoch' or 'batch', got {scheduler_step!r}")
        if isinstance(scheduler, OneCycleLR) and scheduler_step == "epoch":
            warnings.warn("OneCycleLR is a per-batch schedule; with scheduler_step='epoch' its total_steps must "
                          "count epochs", stacklevel=2)
        self.metrics = resolve_metrics(metrics)
        scalars = [m.name for m in self.metrics if m.scalar]
        if monitor is None:
            monitor = "val_accuracy" if "accuracy" in scalars else "val_loss"
        choices = [f"{split}_{name}" for name in ["loss"] + scalars for split in ("val", "train")]
        if monitor not in choices:
            raise ValueError(f"monitor must be one of {', '.join(choices)}; got {monitor!r}")
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be positive, got {clip_grad_norm}")
        self.model, self.optimizer, self.loss_fn, self.scheduler = model, optimizer, loss_fn, scheduler
        self.net = model if replicas == 1 else DataParallel(model, replicas)   # what runs the batches
        self.scheduler_step = scheduler_step
        self.clip_grad_norm = clip_grad_norm
        self.progress = progress
        self.callbacks = _as_list(on_epoch_end)
        self.batch_callbacks = _as_list(on_batch_end)
        self.monitor = monitor
        self.epoch = 0            # completed epochs
        self.global_step = 0      # completed optimisation steps (batches)
        self.history = History()
        self.best_value = None    # best value of the monitored metric so far
        self.stop_training = False
        self._recent_losses = collections.deque(maxlen=5)
        self._position = (0, 0)   # (epoch, batch) being trained, for error messages

    # ------------------------------------------------------------ one step
    def train_step(self, x, y, metrics=()):
        """One optimisation step on the batch ``(x, y)``; returns the batch's mean loss as a Python float
        (the one value copied to the host per batch).

        ``metrics``: accumulators (:class:`~minigru.train.metric_hooks.Metric`) updated with this
        batch's outputs on the device, right after the forward pass: the backward pass may reuse
        the forward's buffers.
        """
        self.model.train()
        self.optimizer.zero_grad()                      # 1. gradients of the last batch are gone
        logits = self.net(x)                            # 2. forward pass: scores (N, K)
        loss = self.loss_fn(logits, y)                  # 3. mean loss over the batch
        loss_value = float(loss)                        #    the step's one host sync
        self._check_finite(loss_value, logits, y)       #    stop before a NaN reaches the weights
        for metric in metrics:                          #    counted on the device, read once per epoch
            metric.update(logits, y)
        dlogits = self.loss_fn.backward()               # 4. dL/dlogits
        self.net.backward(dlogits)                      # 5. backprop: p.grad += dL/dp in every layer
        if self.clip_grad_norm is not None:             # 6. cap the gradient's length
            clip_grad_norm_(self._parameters(), self.clip_grad_norm)
        self.optimizer.step()                           # 7. update the weights
        if self.scheduler is not None and self.scheduler_step == "batch":
            self.scheduler.step()                       # 8. per-batch learning-rate schedule
        self.global_step += 1
        return loss_value

    def _parameters(self):
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _check_finite(self, loss_value: float, logits, y) -> None:
        self._recent_losses.append(loss_value)
        if math.isfinite(loss_value):
            return
        epoch, batch = self._position
        # The loss does not range-check labels on a GPU (a host sync per step): labels out of range make
        # it NaN there, so a NaN loss first looks at the labels, reading them back once.
        labels = backend.to_numpy(y)
        if labels.size and np.dtype(labels.dtype).kind in "iu" and getattr(logits, "ndim", 0) == 2:
            low, high, k = int(labels.min()), int(labels.max()), int(logits.shape[1])
            if low < 0 or high >= k:
                raise ValueError(f"the labels of epoch {epoch}, batch {batch} must be class indices in [0, {k - 1}] "
                                 f"for {k} classes, found values from {low} to {high}")
        recent = ", ".join(f"{v:.4g}" for v in self._recent_losses)
        raise NonFiniteLossError(
            f"the training loss became {loss_value} at epoch {epoch}, batch {batch} (last losses: {recent}). "
            "Try: a lower learning rate; gradient clipping (Trainer(clip_grad_norm=1.0)); checking that the "
            "inputs are normalised (mean 0, std 1) and the labels are in range; and, for a custom layer, "
            "minigru.gradcheck.check_module to verify its backward pass.")

    # ----------------------------------------------------------- one epoch
    def train_epoch(self, loader, description: str = "train") -> dict:
        """Train on every batch of ``loader`` once; returns ``{"loss": mean loss, <metric>: value, ...}``
        over its samples (the scalar metrics measured during training, e.g. ``"accuracy"``)."""
        bar = self._progress_bar(loader, description)
        try:
            scores = self._train_batches(loader, bar)
        except BaseException:
            bar.close("stopped")
            raise
        bar.close(_format_scores(scores))
        return scores

    def _progress_bar(self, loader, description) -> EpochProgress:
        return EpochProgress(self.progress, len(loader) if hasattr(loader, "__len__") else None, description)

    def _train_batches(self, loader, bar) -> dict:
        loss_sum, samples = 0.0, 0
        metrics = [m.fresh() for m in self.metrics if m.during_training and m.scalar]
        for batch, (x, y) in enumerate(batches(loader)):
            self._position = (self.epoch + 1, batch)
            loss_value = self.train_step(x, y, metrics)
            n = int(y.shape[0])
            loss_sum += loss_value * n                  # batch means weighted by batch size
            samples += n
            bar.update(loss_value)
            for callback in self.batch_callbacks:
                callback(self, loss_value)
        if samples == 0:
            raise ValueError("the training loader yielded no batches")
        return {"loss": loss_sum / samples, **{m.name: m.result() for m in metrics}}

    def evaluate(self, loader, *, tta=None, tta_weights=None, progress=False, description="evaluate") -> EvalResult:
        """Loss and metrics of the model on ``loader``: eval mode, under ``no_grad``, mode restored after.

        ``tta``: a list of views (:mod:`minigru.data.tta`) whose outputs are averaged
        (weighted by ``tta_weights``); with an identity view among them the score
        without TTA is ``result.plain``, from the same pass. See
        :func:`minigru.train.evaluation.evaluate`.
        """
        return evaluate(self.net, loader, self.loss_fn, metrics=self.metrics, tta=tta, tta_weights=tta_weights,
                        progress=progress, description=description)

    # ------------------------------------------------------------------ fit
    def fit(self, train_loader, epochs: int, val_loader=None, *, resume_from=None, checkpoint_dir=None,
            checkpoint_every: int = 1, save_best: bool = True) -> History:
        """Train until ``epochs`` epochs are complete in total; returns the :class:`History`.

        ``epochs`` counts the whole run, so a resumed run is given the same
        number as the original: ``fit(loader, 30, resume_from="ckpt/last.npz")``
        trains the epochs that are still missing. To train 5 more epochs in a
        notebook, call ``fit(loader, trainer.epoch + 5)``.

        Parameters
        ----------
        train_loader, val_loader : iterables of ``(x, y)`` batches; their
            ``state_dict()`` (if they have one) is saved in checkpoints.
        resume_from : a checkpoint path to restore first (see :meth:`load_checkpoint`).
        checkpoint_dir : if given, ``last.npz`` is written there every
            ``checkpoint_every`` epochs and after the final one, and ``best.npz``
            whenever the monitored metric improves (if ``save_best``).
        """
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        if resume_from is not None:
            self.load_checkpoint(resume_from, train_loader, val_loader)
        if epochs <= self.epoch:
            warnings.warn(f"nothing to train: {self.epoch} epochs are already complete and epochs={epochs} is "
                          f"the total (pass epochs={self.epoch + epochs} to train {epochs} more)", stacklevel=2)
            return self.history
        self.stop_training = False
        while self.epoch < epochs and not self.stop_training:
            record = self._fit_one_epoch(train_loader, val_loader, epochs)
            improved = self._update_best(record)
            for callback in self.callbacks:
                callback(self, record)
            if checkpoint_dir is not None:
                if self.epoch % checkpoint_every == 0 or self.epoch == epochs or self.stop_training:
                    self.save_checkpoint(os.path.join(checkpoint_dir, "last.npz"), train_loader, val_loader)
                if save_best and improved:
                    self.save_checkpoint(os.path.join(checkpoint_dir, "best.npz"), train_loader, val_loader)
        return self.history

    def _fit_one_epoch(self, train_loader, val_loader, epochs) -> dict:
        epoch = self.epoch + 1
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        bar = self._progress_bar(train_loader, f"epoch {epoch:>{len(str(epochs))}}/{epochs}")
        try:
            scores = self._train_batches(train_loader, bar)
            val = self.evaluate(val_loader) if val_loader is not None else None
        except BaseException:
            bar.close("stopped")
            raise
        record = {f"train_{name}": value for name, value in scores.items()}
        line = _format_scores(scores)
        if val is not None:
            record.update(val_loss=val.loss, **{f"val_{k}": v for k, v in val.metrics.items() if isinstance(v, float)})
            line += " | " + summary(val, prefix="val ")
        bar.close(line)
        if self.scheduler is not None and self.scheduler_step == "epoch":
            self.scheduler.step()
        self.epoch = epoch
        return self.history.append(epoch=epoch, **record, lr=lr, seconds=time.perf_counter() - start)

    # ---------------------------------------------------------- checkpoints
    def _monitored(self, record: dict):
        name = self.monitor
        if record.get(name) is None and name.startswith("val_"):
            name = "train_" + name[4:]
        return name, record.get(name)

    def _update_best(self, record: dict) -> bool:
        """Track the best value of the monitored metric; True if this epoch improved it."""
        name, value = self._monitored(record)
        if value is None or math.isnan(value):
            return False
        metric = name.split("_", 1)[1]
        lower = metric == "loss" or not next(m.higher_is_better for m in self.metrics if m.name == metric)
        if self.best_value is not None and not (value < self.best_value if lower else value > self.best_value):
            return False
        self.best_value = value
        return True

    def save_checkpoint(self, path, train_loader=None, val_loader=None, extra=None) -> str:
        """Save model, optimizer, scheduler, loader and RNG states, the epoch and the History to ``path``.

        ``extra`` is any JSON-able dict (arrays allowed) of your own; the key ``"trainer"`` is reserved.
        """
        loaders = {name: loader for name, loader in (("train", train_loader), ("val", val_loader))
                   if loader is not None and hasattr(loader, "state_dict")}
        trainer_state = {"global_step": self.global_step, "best_value": self.best_value, "monitor": self.monitor}
        return ckpt.save_checkpoint(path, self.model, self.optimizer, self.scheduler, epoch=self.epoch,
                                    history=self.history, loaders=loaders,
                                    extra={**(extra or {}), "trainer": trainer_state})

    def load_checkpoint(self, path, train_loader=None, val_loader=None, strict: bool = True):
        """Restore everything :meth:`save_checkpoint` wrote into this Trainer's objects (and the loaders given).

        Build the model, optimizer, scheduler and loaders exactly as for the
        original run first. Returns the checkpoint's :class:`~minigru.train.checkpoint.LoadedCheckpoint`.
        """
        loaders = {}
        for name, loader in (("train", train_loader), ("val", val_loader)):
            if loader is None:
                continue
            if hasattr(loader, "load_state_dict"):
                loaders[name] = loader
            elif name == "train":
                warnings.warn("the training loader has no load_state_dict(), so its shuffling cannot be restored: "
                              "the resumed run will see batches in a different order", stacklevel=3)
        loaded = ckpt.load_checkpoint(path, self.model, self.optimizer, self.scheduler, loaders=loaders,
                                      strict=strict)
        state = loaded.extra.get("trainer", {})
        global_step, best_value = _trainer_state(path, state)
        self.epoch = int(loaded.epoch or 0)
        self.global_step = global_step
        self.best_value = best_value
        self.history = loaded.history if loaded.history is not None else History()
        return loaded


def _trainer_state(path, state) -> tuple:
    """The Trainer's own entries of a checkpoint's ``extra`` (step count, best monitored value), checked."""
    step = state.get("global_step", 0) if isinstance(state, dict) else None
    best = state.get("best_value") if isinstance(state, dict) else None
    if (not isinstance(step, int) or isinstance(step, bool) or step < 0
            or not (best is None or (isinstance(best, (int, float)) and not isinstance(best, bool)))):
        raise ckpt.CheckpointError(f"checkpoint {os.fspath(path)!r}: its trainer entry {state!r:.80} is not "
                                   "{'global_step': int >= 0, 'best_value': number or null}")
    return step, best


def _as_list(callbacks) -> list:
    if callbacks is None:
        return []
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]


def _format_scores(scores: dict) -> str:
    """The training figures of one epoch for the progress bar, accuracy as a percentage as in the run's lines."""
    return summary(EvalResult(scores["loss"], {k: v for k, v in scores.items() if k != "loss"}))


def fit(model, train_loader, epochs: int, optimizer, loss_fn=None, val_loader=None, *, resume_from=None,
        checkpoint_dir=None, checkpoint_every: int = 1, **trainer_options) -> History:
    """Shortcut: ``Trainer(model, optimizer, loss_fn, **trainer_options).fit(train_loader, epochs, val_loader)``.

    ``loss_fn`` defaults to ``minigru.nn.CrossEntropyLoss()``. Returns the History.
    """
    if loss_fn is None:
        from ..nn import CrossEntropyLoss  # noqa: PLC0415  (the layer lives in minigru.nn)
        loss_fn = CrossEntropyLoss()
    trainer = Trainer(model, optimizer, loss_fn, **trainer_options)
    return trainer.fit(train_loader, epochs, val_loader, resume_from=resume_from, checkpoint_dir=checkpoint_dir,
                       checkpoint_every=checkpoint_every)
