"""A training run from its configuration: the config itself, and the objects built from it (:class:`Run`).

A run is described by one JSON-able *config* (model name and arguments, data
set and data folder, recipe, seed, normalisation statistics). It is written to
``config.json`` and stored in every checkpoint, so ``evaluate`` and
``--resume`` rebuild exactly the same model, data and optimiser from the
checkpoint alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import __version__, backend
from ..data import Compose, DataLoader, Normalize, augmentation, train_val_split
from ..data.augment import AUGMENTATIONS
from ..data.tta import TTA_CHOICES
from ..models import registry
from ..nn import BatchNorm1d, BatchNorm2d, CrossEntropyLoss
from ..optim import SGD, Adam, AdamW, ExponentialMovingAverage, Lookahead
from ..optim.lookahead import airbench_decay
from ..optim.lr_scheduler import CosineAnnealingLR, OneCycleLR
from .common import CLIError, parse_model_args
from .datasets import Data, channel_stats, folder_classes

__all__ = ["Run", "build_run", "resolve_config", "normalise_config", "check_config", "eval_loader", "make_scheduler",
           "schedule_segment", "RUN_OPTIONS", "EVAL_BATCH", "DEFAULT_TEST_SPLIT", "DATA_INIT_IMAGES"]

EVAL_BATCH = 500
DATA_INIT_IMAGES = 5000   # training images that data-dependent layers (PatchWhitening) are fitted to
DEFAULT_TEST_SPLIT = 0.2
LOOKAHEAD_K = 5           # --lookahead: optimizer steps between two pull-backs (airbench's)

# options whose value is part of a run's config (the names of the parsed arguments)
RUN_OPTIONS = ("dataset", "limit_train", "limit_test", "test_split", "seed", "dtype") + registry.RECIPE_KEYS


# ------------------------------------------------------------------ config
def resolve_config(args) -> dict:
    """The full configuration of a new run: the model's recipe, updated by the options given."""
    if args.model is None:
        raise CLIError("--model is required (or --resume with --out of an existing run); "
                       f"choose one of {', '.join(registry.model_names())}")
    recipe = registry.default_recipe(args.model)
    config = {"model": args.model, "dataset": "cifar10", "data": None, "limit_train": None, "limit_test": None,
              "test_split": DEFAULT_TEST_SPLIT, "seed": 0, "dtype": "float32", **recipe}
    for key in RUN_OPTIONS:
        value = getattr(args, key, None)
        if value is not None:
            config[key] = value
    normalise_config(config)
    check_config(config)
    overrides = parse_model_args(args.model_arg)
    if config["dataset"] == "folder" and "num_classes" not in overrides:
        overrides["num_classes"] = len(folder_classes(args.data))   # one output per class folder
    # the model's complete argument list, so that it can be rebuilt without the registry's defaults
    model = registry.build_model(args.model, rng=0, **overrides)
    config["model_args"] = model.config
    config["minigru_version"] = __version__
    return config


def normalise_config(config) -> dict:
    """Settings as names: ``augment`` True/False (older runs, recipes) -> ``"crop-flip"``/``"none"``,
    ``tta`` True/False -> ``"flip"``/``"none"``; keys of newer versions given their defaults."""
    if isinstance(config.get("augment"), bool):
        config["augment"] = "crop-flip" if config["augment"] else "none"
    if isinstance(config.get("tta"), bool):
        config["tta"] = "flip" if config["tta"] else "none"
    config.setdefault("data", None)
    config.setdefault("test_split", DEFAULT_TEST_SPLIT)
    config.setdefault("bn_bias_lr_scale", 1.0)
    config.setdefault("freeze_bn_weight", False)
    config.setdefault("lookahead", False)
    config.setdefault("replicas", 1)
    return config


def check_config(config) -> None:
    """Every setting in its range; a CLIError naming the option otherwise (non-finite floats never parse)."""
    def need(condition, message):
        if not condition:
            raise CLIError(message)
    need(config["epochs"] >= 1, f"--epochs must be >= 1, got {config['epochs']}")
    need(config["batch_size"] >= 2, f"--batch-size must be >= 2 (batch norm needs 2 samples), "
                                     f"got {config['batch_size']}")
    need(config.get("replicas", 1) >= 1, f"--replicas must be >= 1, got {config.get('replicas')}")
    need(config["batch_size"] >= 2 * config.get("replicas", 1),
         f"--batch-size {config['batch_size']} is too small for --replicas {config.get('replicas')}: each replica's "
         "share of the batch needs 2 samples for batch norm")
    need(config["lr"] > 0, f"--lr must be positive, got {config['lr']}")
    need(config["momentum"] >= 0, f"--momentum must be >= 0, got {config['momentum']}")
    need(0.0 <= config["val_split"] < 1.0, f"--val-split must be in [0, 1), got {config['val_split']}")
    need(0.0 < config["test_split"] < 1.0, f"--test-split must be in (0, 1), got {config['test_split']}")
    need(0.0 <= config["label_smoothing"] < 1.0, f"--label-smoothing must be in [0, 1), "
                                                 f"got {config['label_smoothing']}")
    need(config["weight_decay"] >= 0, f"--weight-decay must be >= 0, got {config['weight_decay']}")
    need(0.0 < config["pct_start"] < 1.0, f"--pct-start must be in (0, 1), got {config['pct_start']}")
    need(config.get("bn_bias_lr_scale", 1.0) > 0, f"--bn-bias-lr-scale must be positive, "
                                                  f"got {config.get('bn_bias_lr_scale')}")
    need(config.get("ema") is None or 0.0 <= config["ema"] < 1.0, f"--ema must be in [0, 1), got {config.get('ema')}")
    need(not config.get("nesterov", True) or config["optimizer"] != "sgd" or config["momentum"] > 0,
         "--nesterov needs --momentum > 0 (use --no-nesterov for plain SGD)")
    need(config["clip_grad_norm"] is None or config["clip_grad_norm"] > 0,
         f"--clip-grad-norm must be positive, got {config['clip_grad_norm']}")
    for key in ("limit_train", "limit_test"):
        need(config[key] is None or config[key] >= 1, f"--{key.replace('_', '-')} must be >= 1, got {config[key]}")
    need(config["seed"] >= 0, f"--seed must be >= 0, got {config['seed']}")
    need(config["augment"] in AUGMENTATIONS, f"unknown augmentation {config['augment']!r}")
    need(config["tta"] in TTA_CHOICES, f"unknown test-time augmentation {config['tta']!r}")


# ------------------------------------------------------------------ the objects of a run
@dataclass
class Run:
    """What a run is built into: the model, its optimizer and schedule, the training loss, the loaders
    (``val_loader`` None without a validation split), the data (``data.classes`` names the classes),
    the weight average (``ema``, None unless the run has ``--ema``) and the pull-back to slow weights
    (``lookahead``, None unless the run has ``--lookahead``)."""
    model: object
    optimizer: object
    scheduler: object
    loss: object
    train_loader: DataLoader
    val_loader: DataLoader | None
    test_loader: DataLoader
    data: Data
    ema: ExponentialMovingAverage | None = None
    lookahead: Lookahead | None = None

    @property
    def classes(self) -> list:
        return self.data.classes


def eval_loader(config, images_labels, batch_size=EVAL_BATCH) -> DataLoader:
    """A loader for evaluation: in order, normalised with the run's statistics, no augmentation."""
    norm = config["normalize"]
    return DataLoader(images_labels, batch_size=batch_size, transform=Normalize(norm["mean"], norm["std"]),
                      dtype=np.dtype(config["dtype"]))


def build_run(config, data: Data, epoch: int = 0) -> Run:
    """Everything a run needs, from its config and data, for continuing after ``epoch`` completed
    epochs (0 for a new run: the schedule is that of the segment, see :func:`schedule_segment`).
    Sets ``config["normalize"]`` (the training images' channel statistics) if it is not there yet,
    and ``config["data"]`` to the data folder the images came from."""
    train, test = data.train, data.test
    val = None
    if config["val_split"] > 0:
        train, val = train_val_split(train, config["val_split"], seed=config["seed"])
    if "normalize" not in config:
        mean, std = channel_stats(train[0])
        config["normalize"] = {"mean": mean, "std": std}
    config["data"] = data.folder    # where the images were read this time (--data may point to a new place)
    norm = Normalize(config["normalize"]["mean"], config["normalize"]["std"])
    dtype = np.dtype(config["dtype"])
    steps = augmentation(config["augment"], tuple(train[0].shape[2:]), seed=config["seed"])
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
    start, end = schedule_segment(config, epoch)
    scheduler = make_scheduler(optimizer, config, len(train_loader), end - start)
    ema = None
    if config.get("ema") is not None:            # averaged after every optimizer step (a step hook)
        ema = ExponentialMovingAverage(model, decay=config["ema"], use_buffers=True).attach(optimizer)
    lookahead = None
    if config.get("lookahead", False):           # airbench's: every 5 steps, decay rising to 0.77 over the run
        total = config["epochs"] * len(train_loader)
        lookahead = Lookahead(model, k=LOOKAHEAD_K, decay=airbench_decay(total, LOOKAHEAD_K)).attach(optimizer)
    loss = CrossEntropyLoss(label_smoothing=config["label_smoothing"])
    return Run(model, optimizer, scheduler, loss, train_loader, val_loader, eval_loader(config, test), data, ema,
               lookahead)


def make_optimizer(model, config):
    """The recipe's optimizer, one parameter group per treatment.

    Weight decay only on weight matrices and kernels (not on biases, not on batch norm). Batch norm's
    shifts (β) train at ``bn_bias_lr_scale`` times the learning rate (airbench's "bias scaler", 64: a shift
    moves a whole channel, and a high rate lets it move far in few steps). With ``freeze_bn_weight``, batch
    norm's scales (γ) stay at 1, as in airbench: they sit in a group at learning rate 0, so that
    ``zero_grad`` still clears their gradients.
    """
    norms = [m for m in model.modules() if isinstance(m, (BatchNorm1d, BatchNorm2d)) and m.affine]
    shifts = {id(m.bias) for m in norms}
    frozen = {id(m.weight) for m in norms} if config.get("freeze_bn_weight", False) else set()
    scale = float(config.get("bn_bias_lr_scale", 1.0))
    params = [p for _, p in model.named_parameters()]
    decay = [p for p in params if p.data.ndim > 1]
    no_decay = [p for p in params if p.data.ndim <= 1 and id(p) not in frozen and (scale == 1 or id(p) not in shifts)]
    groups = [({"params": decay, "weight_decay": config["weight_decay"]}, 1.0)]
    if no_decay:
        groups.append(({"params": no_decay, "weight_decay": 0.0}, 1.0))
    if scale != 1 and shifts:
        groups.append(({"params": [p for p in params if id(p) in shifts], "weight_decay": 0.0}, scale))
    if frozen:
        groups.append(({"params": [p for p in params if id(p) in frozen], "weight_decay": 0.0}, 0.0))
    for group, group_scale in groups:
        group["lr"] = config["lr"] * group_scale
    if config["optimizer"] == "sgd":
        nesterov = config.get("nesterov", True) and config["momentum"] > 0
        optimizer = SGD([g for g, _ in groups], lr=config["lr"], momentum=config["momentum"], nesterov=nesterov)
    else:
        optimizer = (Adam if config["optimizer"] == "adam" else AdamW)([g for g, _ in groups], lr=config["lr"])
    # each group's rate relative to the recipe's, which make_scheduler's peaks follow (set after construction,
    # as a scheduler sets "initial_lr": it is bookkeeping, not a hyper-parameter of the update)
    for group, (_, group_scale) in zip(optimizer.param_groups, groups):
        group["lr_scale"] = group_scale
    return optimizer


def make_scheduler(optimizer, config, steps_per_epoch, epochs: int | None = None):
    """The recipe's per-batch or per-epoch schedule over ``epochs`` epochs (default ``config["epochs"]``;
    None for a constant rate).

    ``onecycle``: cosine warm-up from lr/25 to lr over ``pct_start`` of the steps, cosine decay to ~0, momentum
    cycled 0.95 -> 0.85 -> 0.95. ``linear``: straight-line warm-up from lr/10 over ``pct_start`` of the steps,
    straight-line decay to lr·1e-5, constant momentum (airbench's triangle; torch's OneCycleLR with
    ``anneal_strategy="linear", cycle_momentum=False``).
    """
    epochs = config["epochs"] if epochs is None else epochs
    peaks = [config["lr"] * group.get("lr_scale", 1.0) for group in optimizer.param_groups]
    if config["schedule"] == "onecycle":
        return OneCycleLR(optimizer, max_lr=peaks, epochs=epochs, steps_per_epoch=steps_per_epoch,
                          pct_start=config["pct_start"])
    if config["schedule"] == "linear":
        return OneCycleLR(optimizer, max_lr=peaks, epochs=epochs, steps_per_epoch=steps_per_epoch,
                          pct_start=config["pct_start"], anneal_strategy="linear", cycle_momentum=False,
                          div_factor=10.0, final_div_factor=1e4)
    if config["schedule"] == "cosine":
        return CosineAnnealingLR(optimizer, T_max=epochs)
    return None


def schedule_segment(config, epoch: int) -> tuple:
    """(start, end): the schedule segment that the run is in after ``epoch`` completed epochs.

    A run's epochs are cut at ``config["schedule_restarts"]`` (where ``--resume --epochs``
    extended it); each segment has a schedule of its own. A checkpoint at a cut belongs to
    the segment that ended there (its scheduler state is that segment's).
    """
    bounds = [0] + list(config.get("schedule_restarts", [])) + [config["epochs"]]
    for start, end in zip(bounds, bounds[1:]):
        if epoch <= end:
            return start, end
    return bounds[-2], bounds[-1]
