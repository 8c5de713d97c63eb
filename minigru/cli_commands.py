"""The ``train``, ``evaluate`` and ``models`` commands of :mod:`minigru.cli`.

A training run is described by one JSON-able *config* (model name and
arguments, data, recipe, seed, normalisation statistics). It is written to
``config.json`` and stored in every checkpoint, so ``evaluate`` and
``--resume`` rebuild exactly the same model, data and optimiser from the
checkpoint alone.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import __version__, backend
from .cli import CLIError, format_seconds, parse_model_args, write_json
from .data import (Compose, DataLoader, DatasetError, DatasetNotFoundError, Normalize, RandomCrop,
                   RandomHorizontalFlip, load_cifar10, make_shapes, train_val_split)
from .models import registry
from .nn import CrossEntropyLoss, no_grad
from .optim import SGD, Adam, AdamW, ExponentialMovingAverage
from .optim.lr_scheduler import CosineAnnealingLR, OneCycleLR
from .train import CheckpointError, Trainer, plot_history, read_checkpoint
from .train.metrics import confusion_matrix, format_confusion_matrix, per_class_accuracy

__all__ = ["cmd_train", "cmd_evaluate", "cmd_models", "resolve_config", "load_data", "build_run", "USER_ERRORS"]

USER_ERRORS = (CLIError, DatasetNotFoundError, DatasetError, CheckpointError, backend.BackendError,
               FileNotFoundError, ValueError, TypeError, KeyError)

CHECKPOINT = "checkpoint.npz"
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 5000, 1000   # default size of the generated data set
EVAL_BATCH = 500
DATA_INIT_IMAGES = 5000   # training images that data-dependent layers (PatchWhitening) are fitted to

# options whose value is part of a run's config (the names of the parsed arguments)
_RUN_OPTIONS = ("dataset", "limit_train", "limit_test", "seed", "dtype") + registry.RECIPE_KEYS


# ------------------------------------------------------------------ config
def resolve_config(args) -> dict:
    """The full configuration of a new run: the model's recipe, updated by the options given."""
    if args.model is None:
        raise CLIError("--model is required (or --resume with --out of an existing run); "
                       f"choose one of {', '.join(registry.model_names())}")
    recipe = registry.default_recipe(args.model)
    config = {"model": args.model, "dataset": "cifar10", "limit_train": None, "limit_test": None,
              "seed": 0, "dtype": "float32", **recipe}
    for key in _RUN_OPTIONS:
        value = getattr(args, key, None)
        if value is not None:
            config[key] = value
    _check_config(config)
    # the model's complete argument list, so that it can be rebuilt without the registry's defaults
    model = registry.build_model(args.model, rng=0, **parse_model_args(args.model_arg))
    config["model_args"] = model.config
    config["minigru_version"] = __version__
    return config


def _check_config(config) -> None:
    def need(condition, message):
        if not condition:
            raise CLIError(message)
    need(config["epochs"] >= 1, f"--epochs must be >= 1, got {config['epochs']}")
    need(config["batch_size"] >= 2, f"--batch-size must be >= 2 (batch norm needs 2 samples), "
                                     f"got {config['batch_size']}")
    need(config["lr"] > 0, f"--lr must be positive, got {config['lr']}")
    need(0.0 <= config["val_split"] < 1.0, f"--val-split must be in [0, 1), got {config['val_split']}")
    need(0.0 <= config["label_smoothing"] < 1.0, f"--label-smoothing must be in [0, 1), "
                                                 f"got {config['label_smoothing']}")
    need(config["weight_decay"] >= 0, f"--weight-decay must be >= 0, got {config['weight_decay']}")
    need(0.0 < config["pct_start"] < 1.0, f"--pct-start must be in (0, 1), got {config['pct_start']}")
    need(config.get("ema") is None or 0.0 <= config["ema"] < 1.0, f"--ema must be in [0, 1), got {config.get('ema')}")
    need(not config.get("nesterov", True) or config["optimizer"] != "sgd" or config["momentum"] > 0,
         "--nesterov needs --momentum > 0 (use --no-nesterov for plain SGD)")
    for key in ("limit_train", "limit_test"):
        need(config[key] is None or config[key] >= 1, f"--{key.replace('_', '-')} must be >= 1, got {config[key]}")
    need(config["seed"] >= 0, f"--seed must be >= 0, got {config['seed']}")


# ------------------------------------------------------------------ data
def load_data(config, data_path=None, download=False):
    """(train, test, classes): (images uint8 (N, C, H, W), labels int64 (N,)) pairs, limits applied."""
    if config["dataset"] == "cifar10":
        data = load_cifar10(data_path, download=download, progress=True)
    else:
        n_train = config["limit_train"] or SYNTHETIC_TRAIN
        n_test = config["limit_test"] or SYNTHETIC_TEST
        data = make_shapes(n_train, image_size=config["model_args"]["image_size"][0], seed=config["seed"],
                           n_test=n_test)
    train, test = data.train, data.test
    if config["limit_train"]:
        train = (train[0][:config["limit_train"]], train[1][:config["limit_train"]])
    if config["limit_test"]:
        test = (test[0][:config["limit_test"]], test[1][:config["limit_test"]])
    return train, test, data.classes


def channel_stats(images) -> tuple:
    """Per-channel mean and std of uint8 images (N, C, H, W) on the [0, 1] scale (one channel at a time)."""
    means, stds = [], []
    for c in range(images.shape[1]):
        channel = images[:, c].astype(np.float32) / 255.0
        means.append(float(channel.mean(dtype=np.float64)))
        stds.append(float(channel.std(dtype=np.float64)) or 1.0)
    return means, stds


def test_loader(config, test, batch_size=EVAL_BATCH):
    norm = config["normalize"]
    return DataLoader(test, batch_size=batch_size, transform=Normalize(norm["mean"], norm["std"]),
                      dtype=np.dtype(config["dtype"]))


def build_run(config, data_path=None, download=False):
    """Everything a run needs, from its config: a dict of model, loaders, optimizer, scheduler, trainer."""
    train, test, classes = load_data(config, data_path, download)
    val = None
    if config["val_split"] > 0:
        train, val = train_val_split(train, config["val_split"], seed=config["seed"])
    if "normalize" not in config:
        mean, std = channel_stats(train[0])
        config["normalize"] = {"mean": mean, "std": std}
    norm = Normalize(config["normalize"]["mean"], config["normalize"]["std"])
    dtype = np.dtype(config["dtype"])
    size = tuple(train[0].shape[2:])
    steps = [RandomCrop(size, padding=4), RandomHorizontalFlip()] if config["augment"] else []
    if len(train[0]) < config["batch_size"]:
        raise CLIError(f"{len(train[0])} training images make no batch of {config['batch_size']}; "
                       "lower --batch-size or raise --limit-train")
    train_loader = DataLoader(train, batch_size=config["batch_size"], shuffle=True, drop_last=True,
                              transform=Compose(steps + [norm]), seed=config["seed"], dtype=dtype)
    val_loader = None if val is None else DataLoader(val, batch_size=EVAL_BATCH, transform=norm, dtype=dtype)
    model = registry.build_model(config["model"], rng=config["seed"], dtype=dtype, **config["model_args"])
    if hasattr(model, "initialize_from_data"):   # e.g. the whitening filters, from the (normalised) training images
        sample = backend.to_backend(train[0][:DATA_INIT_IMAGES]).astype(dtype) * dtype.type(1 / 255)
        model.initialize_from_data(norm(sample))
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, len(train_loader))
    ema = None
    if config.get("ema") is not None:            # averaged after every optimizer step (a step hook)
        ema = ExponentialMovingAverage(model, decay=config["ema"], use_buffers=True).attach(optimizer)
    loss = CrossEntropyLoss(label_smoothing=config["label_smoothing"])
    return dict(model=model, optimizer=optimizer, scheduler=scheduler, loss=loss, ema=ema, train_loader=train_loader,
                val_loader=val_loader, test_loader=test_loader(config, test), classes=classes)


def make_optimizer(model, config):
    """The recipe's optimizer; weight decay only on weight matrices and kernels (not biases, not batch norm)."""
    decay = [p for _, p in model.named_parameters() if p.data.ndim > 1]
    no_decay = [p for _, p in model.named_parameters() if p.data.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config["weight_decay"]}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if config["optimizer"] == "sgd":
        nesterov = config.get("nesterov", True) and config["momentum"] > 0
        return SGD(groups, lr=config["lr"], momentum=config["momentum"], nesterov=nesterov)
    cls = Adam if config["optimizer"] == "adam" else AdamW
    return cls(groups, lr=config["lr"])


def make_scheduler(optimizer, config, steps_per_epoch):
    """The recipe's per-batch or per-epoch schedule (None for a constant rate).

    ``onecycle``: cosine warm-up from lr/25 to lr over ``pct_start`` of the steps, cosine decay to ~0, momentum
    cycled 0.95 -> 0.85 -> 0.95. ``linear``: straight-line warm-up from lr/10 over ``pct_start`` of the steps,
    straight-line decay to lr·1e-5, constant momentum (airbench's triangle; torch's OneCycleLR with
    ``anneal_strategy="linear", cycle_momentum=False``).
    """
    if config["schedule"] == "onecycle":
        return OneCycleLR(optimizer, max_lr=config["lr"], epochs=config["epochs"], steps_per_epoch=steps_per_epoch,
                          pct_start=config["pct_start"])
    if config["schedule"] == "linear":
        return OneCycleLR(optimizer, max_lr=config["lr"], epochs=config["epochs"], steps_per_epoch=steps_per_epoch,
                          pct_start=config["pct_start"], anneal_strategy="linear", cycle_momentum=False,
                          div_factor=10.0, final_div_factor=1e4)
    if config["schedule"] == "cosine":
        return CosineAnnealingLR(optimizer, T_max=config["epochs"])
    return None


# ------------------------------------------------------------------ evaluation
def evaluate_model(model, loader, num_classes, tta=False):
    """(mean loss, accuracy, confusion matrix) of ``model`` on ``loader`` in eval mode, without caches.

    With ``tta`` the logits of each image and of its mirror image are averaged.
    """
    was_training = model.training
    model.eval()
    loss_fn = CrossEntropyLoss(reduction="sum")
    total_loss, count, cm = 0.0, 0, 0
    try:
        with no_grad():
            for x, y in loader:
                logits = model(x)
                if tta:
                    logits = (logits + model(x[..., ::-1].copy())) * logits.dtype.type(0.5)
                total_loss = total_loss + loss_fn(logits, y)      # sums stay on the device: no sync per batch
                count += int(y.shape[0])
                cm = cm + confusion_matrix(y, logits, num_classes, check=False)
    finally:
        model.train(was_training)
    cm = backend.to_numpy(cm)
    if int(cm.sum()) != count:
        raise ValueError(f"{count - int(cm.sum())} of {count} test labels are not class indices in "
                         f"[0, {num_classes - 1}]")
    return float(total_loss) / count, float(np.trace(cm)) / count, cm


def report_evaluation(loss, acc, cm, classes, tta) -> str:
    """Loss, accuracy, per-class accuracy and the confusion matrix as text."""
    names = [c[len("synthetic-"):] if c.startswith("synthetic-") else c for c in classes]
    width = max(len(n) for n in names)
    lines = [f"test loss {loss:.4f}, test accuracy {100 * acc:.2f}% on {int(cm.sum())} images"
             + (" (with mirror-image averaging)" if tta else ""), "per-class accuracy:"]
    for name, a in zip(names, per_class_accuracy(cm)):
        lines.append(f"  {name:<{width}}  {'n/a' if np.isnan(a) else f'{100 * a:5.1f}%'}")
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines.append(format_confusion_matrix(cm, [n[:6] for n in names]))
    return "\n".join(lines)


# ------------------------------------------------------------------ train
def _resume_config(args, out):
    path = os.path.join(out, CHECKPOINT)
    if not os.path.exists(path):
        raise CLIError(f"--resume: no run to continue in {out!r} (no {CHECKPOINT}); start one without --resume")
    config = read_checkpoint(path)["extra"].get("config")
    if config is None:
        raise CLIError(f"{path} holds no run configuration (it was not written by `minigru train`)")
    given = {key: getattr(args, key) for key in _RUN_OPTIONS + ("model",) if getattr(args, key, None) is not None}
    clashes = [f"--{k.replace('_', '-')} {v!r} (the run has {config[k]!r})" for k, v in given.items()
               if config.get(k) != v]
    if clashes or args.model_arg:
        raise CLIError("--resume continues the run with its saved configuration; these options differ: "
                       + "; ".join(clashes + [f"--model-arg {a}" for a in args.model_arg]))
    return config, path


def _checkpoint_extra(config, run) -> dict:
    extra = {"config": config}
    if run.get("ema") is not None:
        extra["ema"] = run["ema"].state_dict()
    return extra


def _epoch_writer(out, config, run, started, print_lines):
    def on_epoch_end(trainer, record):
        trainer.save_checkpoint(os.path.join(out, CHECKPOINT), run["train_loader"], run["val_loader"],
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


def cmd_train(args) -> int:
    out = args.out or os.path.join("runs", args.model or "run")
    if args.backend:
        backend.set_backend(args.backend)
    if args.resume:
        config, resume_from = _resume_config(args, out)
    else:
        if os.path.exists(os.path.join(out, CHECKPOINT)) and not args.overwrite:
            raise CLIError(f"{out!r} already holds a run ({CHECKPOINT}); continue it with --resume, start afresh "
                           "with --overwrite, or choose another --out")
        config, resume_from = resolve_config(args), None
    run = build_run(config, args.data, args.download)
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "config.json"), config)
    model = run["model"]
    print(f"minigru {__version__}: training {config['model']} ({model.num_parameters():,} parameters) on "
          f"{config['dataset']}: {run['train_loader'].num_samples} training images"
          + (f", {run['val_loader'].num_samples} validation" if run["val_loader"] else "")
          + f", {config['epochs']} epochs, batch {config['batch_size']}, {config['optimizer']} lr {config['lr']}, "
          f"backend {backend.get_backend()} -> {out}", flush=True)
    started = time.perf_counter()
    trainer = Trainer(model, run["optimizer"], run["loss"], scheduler=run["scheduler"],
                      clip_grad_norm=config["clip_grad_norm"], progress=not args.no_progress,
                      on_epoch_end=_epoch_writer(out, config, run, started, args.no_progress))
    if resume_from is not None and run["ema"] is not None:
        run["ema"].load_state_dict(read_checkpoint(resume_from)["extra"]["ema"])
    history = trainer.fit(run["train_loader"], config["epochs"], run["val_loader"], resume_from=resume_from)
    train_seconds = float(sum(s for s in history.seconds if s is not None))
    results = {}
    if run["ema"] is not None:   # the run's result is the averaged model: it goes into the final checkpoint too
        plain_loss, plain_acc, _ = evaluate_model(model, run["test_loader"], len(run["classes"]), config["tta"])
        results.update(test_loss_without_ema=plain_loss, test_accuracy_without_ema=plain_acc)
        print(f"without the weight average: test loss {plain_loss:.4f}, test accuracy {100 * plain_acc:.2f}%")
        run["ema"].copy_to(model)
        trainer.save_checkpoint(os.path.join(out, CHECKPOINT), run["train_loader"], run["val_loader"],
                                extra=_checkpoint_extra(config, run))
    loss, acc, cm = evaluate_model(model, run["test_loader"], len(run["classes"]), config["tta"])
    print(report_evaluation(loss, acc, cm, run["classes"], config["tta"]))
    results = {"model": config["model"], "epochs": trainer.epoch, "test_loss": loss, "test_accuracy": acc, **results,
               "per_class_accuracy": dict(zip(run["classes"], per_class_accuracy(cm).tolist())),
               "confusion_matrix": cm.tolist(), "tta": config["tta"], "train_seconds": train_seconds,
               "parameters": model.num_parameters()}
    if config["tta"]:  # the figure without test-time augmentation too, so that both can be quoted
        plain_loss, plain_acc, _ = evaluate_model(model, run["test_loader"], len(run["classes"]), False)
        results.update(test_loss_without_tta=plain_loss, test_accuracy_without_tta=plain_acc)
        print(f"without mirror-image averaging: test loss {plain_loss:.4f}, test accuracy {100 * plain_acc:.2f}%")
    write_json(os.path.join(out, "results.json"), results)
    print(f"final test accuracy {100 * acc:.2f}% after {trainer.epoch} epochs "
          f"({format_seconds(train_seconds)} of training); files in {out}", flush=True)
    return 0


# ------------------------------------------------------------------ evaluate
def cmd_evaluate(args) -> int:
    if args.backend:
        backend.set_backend(args.backend)
    try:
        model, config = registry.load_trained(args.checkpoint)
    except ValueError as err:           # no run configuration inside: say so in one line
        raise CLIError(str(err)) from None
    if args.limit_test is not None:
        config["limit_test"] = args.limit_test
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    _, test, classes = load_data(config, args.data)
    tta = config["tta"] if args.tta is None else args.tta
    loss, acc, cm = evaluate_model(model, test_loader(config, test, args.batch_size), len(classes), tta)
    print(f"{config['model']} from {args.checkpoint}, {config['dataset']} test set")
    print(report_evaluation(loss, acc, cm, classes, tta))
    return 0


# ------------------------------------------------------------------ models
def cmd_models(args) -> int:
    for name in registry.model_names():
        spec = registry.get_spec(name)
        model = registry.build_model(name, rng=0)
        recipe = ", ".join(f"{k}={v}" for k, v in spec.recipe.items())
        print(f"{name}: {spec.summary}\n  {type(model).__name__}, {model.num_parameters():,} parameters\n"
              f"  arguments: {model.config}\n  recipe: {recipe}")
    return 0
