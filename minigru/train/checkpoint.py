"""Checkpoints: everything needed to continue training, in ONE ``.npz`` file that loads without pickle.

A checkpoint holds the model's parameters and buffers, and optionally the
optimizer's state, the LR scheduler's state, the data loaders' state
(shuffling and augmentation RNGs), the random generators found in the model
(e.g. Dropout's ``rng``), the epoch counter, the :class:`History` and any
extra JSON-able data. Restoring all of these makes resumed training give
exactly the weights an uninterrupted run would have given (NumPy backend).

File layout (open it with ``np.load(path)`` to look inside):

* ``model/<name>``: one array per ``state_dict()`` entry, e.g. ``model/fc.weight``;
* ``optimizer/...``, ``scheduler/...``, ``loaders/...``: the arrays of those states;
* ``__checkpoint__``: UTF-8 JSON text (as a uint8 array) with everything else;
  where an array belongs it holds ``{"__array__": "<npz key>"}``.

The JSON also records the SHA-256 of every array (``"arrays"``), checked on
every load, on top of the zip's own CRC-32 of each member.

It is written atomically (a temporary file in the same folder, flushed to
disk, then renamed over the target), so a crash never leaves a half-written
checkpoint behind, and with the permissions of any new file (``0o666`` minus
the umask). The temporary file of a save that was killed outright is deleted
by the next save or load of that checkpoint. Loading parses the zip and the
``.npy`` headers strictly and never needs pickle; whatever is wrong with a
file (a ``.npy`` instead of an ``.npz``, damaged bytes, truncation, metadata of
the wrong JSON types, arrays that do not match their record) raises
:class:`CheckpointError` naming it, before anything is restored. The file
layer is :mod:`minigru.train.checkpoint_file`, the metadata's schema
:mod:`minigru.train.checkpoint_format`.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from .. import __version__, backend
from .checkpoint_file import CheckpointError, array_digest, read_arrays, remove_stale_temps, write_arrays
from .checkpoint_format import FORMAT, FORMAT_VERSION, META_KEY, check_digests, check_like, damaged, parse_meta
from .history import History

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "module_rngs", "CheckpointError",
           "LoadedCheckpoint"]



@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` found besides the states it restored."""
    epoch: int | None
    history: History | None
    extra: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


# ------------------------------------------------------------- JSON + arrays
def _encode(obj, key: str, arrays: dict):
    """JSON-ready copy of ``obj``; arrays go into ``arrays[key]`` and are replaced by a reference."""
    if isinstance(obj, np.generic):
        return obj.item()
    if backend.is_array(obj):
        host = backend.to_numpy(obj)
        if host.dtype.kind in "OV":
            raise TypeError(f"{key}: arrays of dtype {host.dtype} would need pickle; not stored")
        if key in arrays:
            raise ValueError(f"two entries of the checkpoint map to the same name {key!r}")
        arrays[key] = host
        return {"__array__": key}
    if isinstance(obj, dict):
        if "__array__" in obj:
            raise ValueError(f"{key}: '__array__' is a reserved key in checkpoint data")
        return {str(k): _encode(v, f"{key}/{k}", arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, f"{key}/{i}", arrays) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} at {key!r} in a checkpoint: only arrays, numbers, "
                    "strings, None, lists and dicts (no pickle)")


def _decode(obj, arrays: dict, path: str, where: str = "metadata"):
    """``obj`` with every ``{"__array__": name}`` replaced by that array of the file."""
    if isinstance(obj, dict):
        if "__array__" in obj:
            ref = obj["__array__"]
            if len(obj) != 1 or not isinstance(ref, str) or ref not in arrays:
                raise damaged(path, f"{where} refers to an array {ref!r} that the file does not hold")
            return arrays[ref]
        return {k: _decode(v, arrays, path, f"{where}/{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, arrays, path, f"{where}/{i}") for i, v in enumerate(obj)]
    return obj


def module_rngs(model) -> dict:
    """Every ``numpy.random.Generator`` held as an attribute by ``model`` or its sub-modules, by dotted name."""
    found = {}
    for prefix, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, np.random.Generator):
                found[f"{prefix}.{attr}" if prefix else attr] = value
    return found


def _as_loader_dict(loaders) -> dict:
    if loaders is None:
        return {}
    if not isinstance(loaders, dict):
        loaders = {"train": loaders}
    for name, loader in loaders.items():
        if not (hasattr(loader, "state_dict") and hasattr(loader, "load_state_dict")):
            raise TypeError(f"loader {name!r} ({type(loader).__name__}) has no state_dict()/load_state_dict(), "
                            "so its shuffling cannot be saved")
    return loaders


# -------------------------------------------------------------------- save
def save_checkpoint(path, model, optimizer=None, scheduler=None, *, epoch=None, history=None, loaders=None,
                    rngs=None, extra=None) -> str:
    """Write a training checkpoint to ``path`` (one ``.npz`` file, replaced atomically; the
    temporary files of earlier saves of ``path`` that were killed are deleted first).

    Parameters
    ----------
    model : the Module; its ``state_dict()`` (as NumPy arrays) and its random generators are saved.
    optimizer, scheduler : saved with their ``state_dict()`` and class name.
    epoch : number of completed epochs.
    history : a :class:`History` (or its ``to_dict()``).
    loaders : a data loader, or a dict ``{"train": loader, ...}``, with ``state_dict()``.
    rngs : more ``numpy.random.Generator`` objects to save, as ``{name: generator}``.
    extra : any JSON-able dict (arrays allowed), returned by :func:`load_checkpoint`.

    Returns ``path`` as a string.
    """
    path = os.fspath(path)
    arrays = {}
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "minigru_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model_class": type(model).__name__,
        "model": _encode(dict(model.state_dict()), "model", arrays),
        "model_rngs": {name: _encode(g.bit_generator.state, f"rngs/model/{name}", arrays)
                       for name, g in module_rngs(model).items()},
        "rngs": {name: _encode(g.bit_generator.state, f"rngs/extra/{name}", arrays)
                 for name, g in (rngs or {}).items()},
        "epoch": epoch,
        "history": _encode(history.to_dict() if isinstance(history, History) else history, "history", arrays),
        "optimizer": None if optimizer is None else {
            "class": type(optimizer).__name__, "state": _encode(optimizer.state_dict(), "optimizer", arrays)},
        "scheduler": None if scheduler is None else {
            "class": type(scheduler).__name__, "state": _encode(scheduler.state_dict(), "scheduler", arrays)},
        "loaders": {name: _encode(loader.state_dict(), f"loaders/{name}", arrays)
                    for name, loader in _as_loader_dict(loaders).items()},
        "extra": _encode(extra or {}, "extra", arrays),
    }
    meta["arrays"] = {name: array_digest(array) for name, array in arrays.items()}
    text = json.dumps(meta)
    arrays[META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    write_arrays(path, arrays)
    return path


# -------------------------------------------------------------------- load
def read_checkpoint(path) -> dict:
    """Decode a checkpoint file without a model: a dict with ``"model"`` (name -> NumPy array),
    ``"optimizer"``, ``"scheduler"``, ``"loaders"``, ``"epoch"``, ``"history"``, ``"extra"``, ...

    Raises FileNotFoundError for a missing file and :class:`CheckpointError`
    for a corrupt, truncated, foreign or inconsistent one (the message names
    it). Temporary files of killed saves of ``path`` are deleted first.
    """
    path = os.fspath(path)
    remove_stale_temps(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r} (current folder: {os.getcwd()})")
    arrays = read_arrays(path)
    meta = parse_meta(path, arrays)
    digests = meta.pop("arrays")
    if digests is not None:  # files of minigru versions before the digests have only the zip's CRC-32
        check_digests(path, digests, arrays)
    data = _decode(meta, arrays, path)
    for name, value in data["model"].items():
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            what = f"a {value.dtype} array" if isinstance(value, np.ndarray) else json.dumps(value)[:40]
            raise damaged(path, f"model weight {name!r} is {what}, not a numeric array")
    return data


def _check_model(path, saved: dict, model, strict: bool, saved_class: str) -> None:
    current = model.state_dict()
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    mismatched = [f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(current[k].shape)}"
                  for k in current if k in saved and tuple(saved[k].shape) != tuple(current[k].shape)]
    problems = []
    if strict and missing:
        problems.append(f"missing from the checkpoint: {missing}")
    if strict and unexpected:
        problems.append(f"not in the model: {unexpected}")
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(mismatched))
    if problems:
        raise CheckpointError(f"checkpoint {path!r} (saved from a {saved_class}) does not fit this "
                              f"{type(model).__name__}: " + "; ".join(problems)
                              + ". Build the model with the same settings it was trained with.")


@contextlib.contextmanager
def _restoring(path: str, what: str):
    """Report a state the object refuses (its types or contents are wrong) as a CheckpointError naming the file."""
    try:
        yield
    except CheckpointError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, OverflowError) as err:
        raise CheckpointError(f"checkpoint {path!r}: cannot restore the {what}: {type(err).__name__}: {err}") from err


def _check_class(path, what: str, saved, obj) -> None:
    if saved is None:
        raise CheckpointError(f"checkpoint {path!r} holds no {what} state, but a {what} was given to restore")
    if saved["class"] != type(obj).__name__:
        raise CheckpointError(f"checkpoint {path!r} holds the state of a {saved['class']} {what}, "
                              f"not of a {type(obj).__name__}")


def _check_generator_state(path, generator, state, name) -> None:
    """Try ``state`` on a scratch generator of the same kind, so that a bad one fails before anything changes."""
    scratch = type(generator.bit_generator)()
    with _restoring(path, f"random generator {name!r}"):
        scratch.state = state


def load_checkpoint(path, model, optimizer=None, scheduler=None, *, loaders=None, rngs=None,
                    strict: bool = True) -> LoadedCheckpoint:
    """Restore a checkpoint written by :func:`save_checkpoint` into existing objects.

    The model is loaded onto its own backend and dtype; the optimizer,
    scheduler, loaders and generators given are restored too (build them
    exactly as for the original run first). The model's random generators
    (found by :func:`module_rngs`) are always restored. With ``strict``,
    missing or unexpected weights are an error; shape mismatches always are.

    Every check that needs no change to an object (the file, the weights'
    names and shapes, the classes, the history, the generator states) runs
    before anything is restored. The loaders' states are restored last: they
    are the only ones that cannot be tried beforehand.

    Returns a :class:`LoadedCheckpoint` with the epoch, the History and ``extra``.
    Raises FileNotFoundError (no file) or :class:`CheckpointError` (naming the file).
    """
    path = os.fspath(path)
    data = read_checkpoint(path)
    # Everything that can be checked without changing an object is checked first, so that a bad file
    # leaves the model, optimizer, scheduler and generators as they were.
    _check_model(path, data["model"], model, strict, data["model_class"])
    if optimizer is not None:
        _check_class(path, "optimizer", data["optimizer"], optimizer)
    if scheduler is not None:
        _check_class(path, "scheduler", data["scheduler"], scheduler)
    loaders = _as_loader_dict(loaders)
    if optimizer is not None:  # groups gain keys from schedulers ("initial_lr"): only the kinds are compared
        saved_groups = data["optimizer"]["state"].get("param_groups")
        for i, (saved, group) in enumerate(zip(saved_groups if isinstance(saved_groups, list) else [],
                                               optimizer.param_groups)):
            check_like(path, "optimizer", saved, {k: v for k, v in group.items() if k != "params"},
                        allow_new_keys=True, where=f" param_groups[{i}]")
    if scheduler is not None:
        check_like(path, "scheduler", data["scheduler"]["state"], scheduler.state_dict(), allow_new_keys=False,
                    where=" state")
    with _restoring(path, "history"):
        history = History.from_dict(data["history"]) if data["history"] is not None else None
    saved_rngs = data["model_rngs"]
    model_generators = module_rngs(model)
    for name, generator in model_generators.items():
        if name in saved_rngs:
            _check_generator_state(path, generator, saved_rngs[name], name)
    for name, generator in (rngs or {}).items():
        if name not in data["rngs"]:
            raise CheckpointError(f"checkpoint {path!r} holds no random generator {name!r} "
                                  f"(it has {sorted(data['rngs'])})")
        _check_generator_state(path, generator, data["rngs"][name], name)

    # the optimizer checks everything before changing itself, so a misfit changes nothing
    if optimizer is not None:
        with _restoring(path, "optimizer state"):
            optimizer.load_state_dict(data["optimizer"]["state"])
    if scheduler is not None:
        with _restoring(path, "scheduler state"):
            scheduler.load_state_dict(data["scheduler"]["state"])
    with _restoring(path, "model weights"):
        model.load_state_dict(data["model"], strict=strict)
    for name, generator in model_generators.items():
        if name in saved_rngs:
            generator.bit_generator.state = saved_rngs[name]
        else:
            warnings.warn(f"checkpoint {path!r} holds no state for the model's random generator {name!r}",
                          stacklevel=2)
    for name, generator in (rngs or {}).items():
        generator.bit_generator.state = data["rngs"][name]
    for name, loader in loaders.items():  # last: a loader cannot be checked without being changed
        if name in data["loaders"]:
            with _restoring(path, f"state of loader {name!r}"):
                loader.load_state_dict(data["loaders"][name])
        else:
            warnings.warn(f"checkpoint {path!r} holds no state for loader {name!r}; its order will differ "
                          "from the original run", stacklevel=2)
    return LoadedCheckpoint(epoch=data["epoch"], history=history, extra=data["extra"],
                            meta={k: data[k] for k in ("format_version", "minigru_version", "created", "model_class")
                                  if k in data})
