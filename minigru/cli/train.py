"""``minigru train``: a run from a model's recipe, with checkpoints, exact resume and extension.

``--resume`` continues the run in ``--out`` with its saved configuration;
``--resume --epochs N`` with N beyond the run's planned epochs E extends it:
epochs 1..E follow the original schedule, and epochs E+1..N a new schedule of
the same kind over the N - E extra epochs (a warm restart: one-cycle warms up
to its peak rate again, cosine starts again from the base rate), continuing
from the trained weights and the optimizer's state. The restart epochs are
kept in the config (``schedule_restarts``), so an extended run resumes exactly
too.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .. import __version__, backend
from ..data import tta_views
from ..nn import CrossEntropyLoss
from ..train import NonFiniteLossError, Trainer, evaluate, plot_history, read_checkpoint
from ..train.metrics import per_class_accuracy
from .common import CLIError, TrainingDiverged, format_seconds, plural, write_json
from .datasets import describe_folder, load_data
from .evaluate import report_evaluation
from .run import RUN_OPTIONS, build_run, make_scheduler, normalise_config, resolve_config, schedule_segment
from .threads import elementwise_engine, thread_limit

__all__ = ["cmd_train", "CHECKPOINT"]

CHECKPOINT = "checkpoint.npz"


# ------------------------------------------------------------------ resume and extend
def _resume_config(args, out):
    path = os.path.join(out, CHECKPOINT)
    if not os.path.exists(path):
        raise CLIError(f"--resume: no run to continue in {out!r} (no {CHECKPOINT}); start one without --resume")
    saved = read_checkpoint(path)
    config = (saved.get("extra") or {}).get("config")
    if config is None:
        raise CLIError(f"{path} holds no run configuration (it was not written by `minigru train`)")
    normalise_config(config)
    given = {key: getattr(args, key) for key in RUN_OPTIONS + ("model",) if getattr(args, key, None) is not None}
    done = int(saved.get("epoch") or 0)
    if "epochs" in given:
        _extend(config, given.pop("epochs"), done)
    clashes = [f"--{k.replace('_', '-')} {v!r} (the run has {config[k]!r})" for k, v in given.items()
               if config.get(k) != v]
    if clashes or args.model_arg:
        raise CLIError("--resume continues the run with its saved configuration; these options differ: "
                       + "; ".join(clashes + [f"--model-arg {a}" for a in args.model_arg]))
    return config, path, done


def _extend(config, epochs: int, done: int) -> None:
    """``--resume --epochs N``: plan N epochs in total, a new schedule starting after the planned ones."""
    planned = config["epochs"]
    if epochs == planned:
        return
    if epochs < planned:
        raise CLIError(f"--resume --epochs {epochs}: the run is planned for {planned} epochs ({done} done); "
                       "a run can be extended, not shortened (its schedule is fixed)")
    config.setdefault("schedule_restarts", []).append(planned)
    config["epochs"] = epochs


def _restart_schedule(trainer, config, steps_per_epoch) -> None:
    """At the end of a schedule segment with epochs still to go, start the next segment's schedule."""
    if trainer.epoch in config.get("schedule_restarts", []) and trainer.epoch < config["epochs"]:
        start, end = schedule_segment(config, trainer.epoch + 1)
        trainer.scheduler = make_scheduler(trainer.optimizer, config, steps_per_epoch, end - start)


# ------------------------------------------------------------------ output
def _checkpoint_extra(config, run) -> dict:
    extra = {"config": config}
    if run.ema is not None:
        extra["ema"] = run.ema.state_dict()
    if run.lookahead is not None:
        extra["lookahead"] = run.lookahead.state_dict()
    return extra


def _epoch_writer(out, config, run, started, print_lines):
    def on_epoch_end(trainer, record):
        _restart_schedule(trainer, config, len(run.train_loader))   # before saving: the state to resume from
        trainer.save_checkpoint(os.path.join(out, CHECKPOINT), run.train_loader, run.val_loader,
                                extra=_checkpoint_extra(config, run))
        trainer.history.to_json(os.path.join(out, "history.json"))
        try:
            plot_history(trainer.history, os.path.join(out, "learning_curve.png"),
                         title=f"{config['model']} on {config['dataset']}")
        except ImportError:
            pass  # matplotlib is optional; history.json has the numbers
        if print_lines:
            val = (f" | val loss {record['val_loss']:.4f}, val acc {100 * record['val_accuracy']:.2f}%"
                   if record["val_loss"] is not None else "")
            print(f"epoch {record['epoch']:>3}/{config['epochs']}: loss {record['train_loss']:.4f}, "
                  f"acc {100 * record['train_accuracy']:.2f}%{val} | lr {record['lr']:.4g} | "
                  f"{record['seconds']:.0f}s (total {format_seconds(time.perf_counter() - started)})", flush=True)
    return on_epoch_end


def _header(config, run, out, threads_text) -> str:
    model = run.model
    val = f", {run.val_loader.num_samples:,} validation" if run.val_loader else ""
    return (f"minigru {__version__}: training {config['model']} ({model.num_parameters():,} parameters) on "
            f"{config['dataset']} ({describe_folder(run.data.folder)}): {run.train_loader.num_samples:,} training "
            f"images{val}, {plural(config['epochs'], 'epoch')}, batch {config['batch_size']}, {config['optimizer']} "
            f"lr {config['lr']}, augment {config['augment']}, backend {backend.get_backend()}, {threads_text}"
            f"{_replicas_text(config)} -> {out}")


def _replicas_text(config) -> str:
    replicas = config.get("replicas", 1)
    return "" if replicas == 1 else f", {replicas} replicas (one thread each, {config['batch_size'] // replicas} images)"


def _check_out(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out!r} is a file, not a folder; choose another --out")


# ------------------------------------------------------------------ the command
def cmd_train(args) -> int:
    out = args.out or os.path.join("runs", args.model or "run")
    _check_out(out)
    if args.backend:
        backend.set_backend(args.backend)
    if args.resume:
        config, resume_from, done = _resume_config(args, out)
    else:
        if os.path.exists(os.path.join(out, CHECKPOINT)) and not args.overwrite:
            raise CLIError(f"{out!r} already holds a run ({CHECKPOINT}); continue it with --resume, start afresh "
                           "with --overwrite, or choose another --out")
        config, resume_from, done = resolve_config(args), None, 0
    # A diverging run overflows before its loss turns NaN; the Trainer stops it with one clear message
    # (NonFiniteLossError), so NumPy's overflow warnings would only add noise above it.
    with thread_limit(args.threads) as threads_text, elementwise_engine(args.engine, args.threads) as engine_text, \
            np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _train(args, out, config, resume_from, done, threads_text + engine_text)


def _train(args, out, config, resume_from, done, threads_text) -> int:
    run = build_run(config, load_data(config, args.data, args.download), epoch=done)
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "config.json"), config)
    print(_header(config, run, out, threads_text), flush=True)
    progress = not args.no_progress
    started = time.perf_counter()
    trainer = Trainer(run.model, run.optimizer, run.loss, scheduler=run.scheduler,
                      clip_grad_norm=config["clip_grad_norm"], progress=progress,
                      on_epoch_end=_epoch_writer(out, config, run, started, args.no_progress),
                      replicas=config["replicas"])
    if resume_from is not None:
        loaded = trainer.load_checkpoint(resume_from, run.train_loader, run.val_loader)
        if run.ema is not None:
            run.ema.load_state_dict(loaded.extra["ema"])
        if run.lookahead is not None:
            run.lookahead.load_state_dict(loaded.extra["lookahead"])
        _restart_schedule(trainer, config, len(run.train_loader))
    if trainer.epoch >= config["epochs"]:
        print(f"the run has completed its {plural(config['epochs'], 'epoch')}: scoring it on the test set "
              "(--resume --epochs N extends it)", flush=True)
    try:
        history = (trainer.fit(run.train_loader, config["epochs"], run.val_loader)
                   if trainer.epoch < config["epochs"] else trainer.history)
    except NonFiniteLossError as err:
        kept = (f"the last good epoch ({trainer.epoch}) is in {os.path.join(out, CHECKPOINT)}" if trainer.epoch
                else "no epoch was completed, so no checkpoint was written")
        raise TrainingDiverged(f"{err} ({kept})") from None
    train_seconds = float(sum(s for s in history.seconds if s is not None))
    if run.lookahead is not None:   # training ends on the slow weights, which the final checkpoint holds
        run.lookahead.finish()
        trainer.save_checkpoint(os.path.join(out, CHECKPOINT), run.train_loader, run.val_loader,
                                extra=_checkpoint_extra(config, run))
    views, weights = tta_views(config["tta"])
    extra_results = {}
    if run.ema is not None:   # the run's result is the averaged model: it goes into the final checkpoint too
        trained = evaluate(trainer.net, run.test_loader, CrossEntropyLoss(), tta=views, tta_weights=weights,
                           progress=progress, description="test (trained weights)")
        extra_results.update(test_loss_without_ema=trained.loss, test_accuracy_without_ema=trained.accuracy)
        print(f"without the weight average: test loss {trained.loss:.4f}, "
              f"test accuracy {100 * trained.accuracy:.2f}%")
        run.ema.copy_to(run.model)
        trainer.save_checkpoint(os.path.join(out, CHECKPOINT), run.train_loader, run.val_loader,
                                extra=_checkpoint_extra(config, run))
    result = evaluate(trainer.net, run.test_loader, CrossEntropyLoss(), tta=views, tta_weights=weights,
                      progress=progress, description="test")
    print(report_evaluation(result, run.classes, config["tta"]))
    cm = result.confusion_matrix
    results = {"model": config["model"], "epochs": trainer.epoch, "test_loss": result.loss,
               "test_accuracy": result.accuracy, **extra_results,
               "per_class_accuracy": dict(zip(run.classes, _none_for_nan(per_class_accuracy(cm)))),
               "confusion_matrix": cm.tolist(), "tta": config["tta"], "train_seconds": train_seconds,
               "parameters": run.model.num_parameters()}
    if result.plain is not None:  # the figure without test-time augmentation too, from the same pass
        results.update(test_loss_without_tta=result.plain.loss, test_accuracy_without_tta=result.plain.accuracy)
        print(f"without test-time augmentation: test loss {result.plain.loss:.4f}, "
              f"test accuracy {100 * result.plain.accuracy:.2f}%")
    write_json(os.path.join(out, "results.json"), results)
    print(f"final test accuracy {100 * result.accuracy:.2f}% after {plural(trainer.epoch, 'epoch')} "
          f"({format_seconds(train_seconds)} of training); files in {out}", flush=True)
    return 0


def _none_for_nan(values) -> list:
    """Per-class accuracies for JSON: None for a class without test images (NaN is not JSON)."""
    return [None if v != v else float(v) for v in values]
