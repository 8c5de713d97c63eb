"""Model names for the command line, their constructors and their best known training recipes.

>>> from minigru.models import build_model
>>> model = build_model("cnn-gru-bn", rng=0)              # doctest: +SKIP
>>> model = build_model("row-gru", hidden_size=256)      # any constructor argument can be overridden

Each entry couples a model with the training recipe that ``minigru train
--model NAME`` uses by default, so that the command alone reproduces the
figure reported for it (docs/models.md lists the measured results).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cnn_gru import CNNGRU, CNNGRU_PRESETS
from .renet import ReNet
from .row_gru import RowGRU
from .seed_cnn import SeedCNN
from .whitened_cnn_gru import WhitenedCNNGRU

__all__ = ["ModelSpec", "MODELS", "model_names", "get_spec", "build_model", "default_recipe", "load_trained",
           "RECIPE_KEYS"]

RECIPE_KEYS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "bn_bias_lr_scale",
               "freeze_bn_weight", "schedule", "pct_start", "label_smoothing", "augment", "clip_grad_norm", "ema",
               "lookahead", "val_split", "tta", "replicas")
"""The training settings a recipe fixes (the CLI options of the same names override them)."""

# Shared by every recipe unless it says otherwise: 20 epochs (so that the models compare at one budget),
# SGD with Nesterov momentum and a one-cycle schedule, weight decay on weights only (not on biases or
# batch-norm parameters), batch norm's shifts at the learning rate and its scales trained, no lookahead,
# label smoothing, crop + flip augmentation (``augment`` and ``tta`` name a set of minigru.data.augment and
# minigru.data.tta), 10% of the images held out, the whole batch on one model (``replicas``: minigru.nn.DataParallel).
# Batch-norm lets the preset use twice the peak learning rate of the plain CNNs.
_BASE_RECIPE = dict(epochs=20, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                    weight_decay=5e-4, bn_bias_lr_scale=1.0, freeze_bn_weight=False, schedule="onecycle",
                    pct_start=0.25, label_smoothing=0.1, augment="crop-flip", clip_grad_norm=None, ema=None,
                    lookahead=False, val_split=0.1, tta="none", replicas=1)


# The airbench-style models (docs/models.md, "Ingredients"): every ingredient at once. A frozen 2x2 patch
# whitening (cnn-gru-fast: stride 2, lossless, and no trained convolution at full size; cnn-gru-hour: stride 1,
# airbench's own), batch norm everywhere and a high learning rate, Nesterov SGD, a short linear warm-up then a
# linear decay, label smoothing 0.2, all 50,000 training images (no validation split: the budget is wall time),
# airbench's augmentation (shifts of up to 2 pixels into a reflected border, then flips: the classic 4-pixel crops
# into a black border make both recipes underfit, 80.77% against 82.55% and 86.42% against 87.55%, 3 seeds each),
# test-time augmentation with airbench's flip + one-pixel translation views. The first convolution skips its
# input gradient (input_grad=False), which training never needs. The epochs are sized from measured step times
# (docs/models.md, "Sizing the recipes").
_FAST_MODEL = dict(whiten_stride=2, widths=(64, 128), convs_per_block=(1, 2), hidden_size=128, bidirectional=True,
                   input_grad=False)
_FAST_RECIPE = {**_BASE_RECIPE, "epochs": 9, "batch_size": 256, "lr": 0.2, "schedule": "linear", "pct_start": 0.2,
                "label_smoothing": 0.2, "augment": "translate-flip", "val_split": 0.0, "tta": "flip-translate"}
# The hour recipe is airbench's layout: overlapping 2x2 whitening (stride 1), so the first block runs at 31x31,
# then blocks of 64, 256 and 256 channels, two convolutions each (31 -> 15 -> 7 -> 3); the GRU reads 3 columns.
# It trains on both cores: two replicas (minigru.nn.DataParallel, 128 images each, one BLAS thread each) take
# 1.23 s per step of 256 images on the 2-core VM where one model on one thread takes 2.2 s, so 13 epochs fill the
# hour (56 min for the whole command on the slower of two VMs; 90.31% over 3 seeds with GELU, below; with
# one thread and two runs side by side, 7 did: 88.24% over 3 seeds).
# benchmarks/recipe_step_times.py; docs/models.md, "Sizing the recipes" and "The hour recipe, measured".
# On top of the fast recipe's ingredients it trains with airbench's optimisation ones and its alternating flips,
# which help this layout (88.24% against 87.55%, 3 seeds each) and not cnn-gru-fast's (docs/models.md, "The hour
# recipe, measured"): batch norm's shifts at 64 x the learning rate and its scales fixed at 1, batch-norm momentum
# 0.4, Lookahead, and each image mirrored in every other epoch; airbench's identity-initialised block
# convolutions (dirac_init), which added 0.14 points on average over the same 3 seeds (90.12% against 89.98%);
# and airbench's GELU (tanh form) in place of every ReLU, which added 0.19 more (90.31% against 90.12%, every
# seed over 90%) for a step within 2% of the ReLU one's.
_HOUR_MODEL = dict(whiten_stride=1, widths=(64, 256, 256), convs_per_block=2, hidden_size=192, bidirectional=True,
                   dropout=0.1, input_grad=False, bn_momentum=0.4, dirac_init=True, activation="gelu")
_HOUR_RECIPE = {**_FAST_RECIPE, "epochs": 13, "augment": "translate-altflip", "bn_bias_lr_scale": 64.0,
                "freeze_bn_weight": True, "lookahead": True, "replicas": 2}


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its CLI ``name``, ``builder`` (class or factory), default constructor
    arguments ``defaults``, training ``recipe`` and a one-line ``summary``."""
    name: str
    builder: type
    defaults: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    summary: str = ""


MODELS = {spec.name: spec for spec in (
    ModelSpec("seed-cnn", SeedCNN, {},
              {**_BASE_RECIPE},
              "plain CNN: 3 conv blocks 32/64/128 + FC 2048-1024-512-10"),
    ModelSpec("cnn-gru", CNNGRU, dict(CNNGRU_PRESETS["default"]),
              {**_BASE_RECIPE},
              "conv blocks 32/64/128, then a GRU(128) over the 4 columns of the 128x4x4 feature map"),
    ModelSpec("cnn-gru-bn", CNNGRU, dict(CNNGRU_PRESETS["best"]),
              {**_BASE_RECIPE, "lr": 0.1, "tta": "flip"},
              "the accuracy preset: conv blocks with batch norm, bidirectional GRU over the feature-map columns"),
    ModelSpec("row-gru", RowGRU, dict(hidden_size=128),
              {**_BASE_RECIPE, "optimizer": "adam", "lr": 3e-3, "weight_decay": 0.0,
               "label_smoothing": 0.0, "augment": "none", "clip_grad_norm": 5.0},
              "GRU(128) reading the image one pixel row (3x32 values) per step"),
    ModelSpec("renet", ReNet, dict(hidden_sizes=(32, 32), patch_sizes=2),
              {**_BASE_RECIPE, "epochs": 15, "batch_size": 64, "optimizer": "adam", "lr": 2e-3,
               "weight_decay": 0.0, "label_smoothing": 0.0, "clip_grad_norm": 5.0},
              "ReNet: two layers of bidirectional GRU sweeps (32 units) over 2x2 patches, no convolutions"),
    ModelSpec("cnn-gru-fast", WhitenedCNNGRU, dict(_FAST_MODEL),
              dict(_FAST_RECIPE),
              "the 10-minute recipe: frozen 2x2 patch whitening (stride 2), conv-BN blocks 64/128, "
              "bidirectional GRU over the 4 feature-map columns"),
    ModelSpec("cnn-gru-hour", WhitenedCNNGRU, dict(_HOUR_MODEL),
              dict(_HOUR_RECIPE),
              "the hour recipe: airbench's layout, frozen 2x2 patch whitening (stride 1), two convs per block "
              "64/256/256 with GELU, bidirectional GRU over the 3 feature-map columns"),
)}


def model_names() -> list:
    """The registered names, in registration order."""
    return list(MODELS)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; a ValueError listing the choices for an unknown name."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None


def build_model(name: str, *, rng=None, dtype=None, **overrides):
    """Build the registered model ``name`` with its default arguments, updated by ``overrides``.

    ``rng`` (Generator or int seed) draws the initial weights; ``dtype`` is the
    parameter dtype. Unknown argument names raise a TypeError naming them.
    """
    spec = get_spec(name)
    arguments = {**spec.defaults, **overrides}
    try:
        return spec.builder(**arguments, rng=rng, dtype=dtype)
    except TypeError as err:
        raise TypeError(f"model {name!r} ({spec.builder.__name__}) does not take these arguments: {err}") from None


def default_recipe(name: str) -> dict:
    """A copy of the training recipe of model ``name`` (keys: :data:`RECIPE_KEYS`)."""
    return dict(get_spec(name).recipe)


def load_trained(path):
    """The model of a ``minigru train`` run, with its trained weights: ``model, config = load_trained(path)``.

    ``path`` is a run folder (its ``checkpoint.npz`` is read) or a checkpoint
    file. The model is rebuilt from the run configuration stored inside the
    checkpoint (registry name, constructor arguments, dtype) and returned in
    evaluation mode; ``config`` is that configuration (a dict, as in
    ``config.json``; ``config["normalize"]`` holds the input normalisation).
    A checkpoint without a run configuration raises a ValueError that says so.
    """
    from ..train import read_checkpoint  # noqa: PLC0415  (minigru.train is loaded on demand)

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    data = read_checkpoint(path)
    config = (data.get("extra") or {}).get("config")
    if config is None:
        raise ValueError(f"{path} holds no run configuration (it was not written by `minigru train`), "
                         "so the model cannot be rebuilt")
    model = build_model(config["model"], rng=0, dtype=np.dtype(config["dtype"]), **config["model_args"])
    model.load_state_dict(data["model"])
    return model.eval(), config
