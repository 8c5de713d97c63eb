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

It is written atomically (a temporary file in the same folder, flushed to
disk, then renamed over the target), so a crash never leaves a half-written
checkpoint behind; it is read with ``np.load(..., allow_pickle=False)``.
"""
from __future__ import annotations

import datetime
import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .. import __version__, backend
from .history import History

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "module_rngs", "CheckpointError",
           "LoadedCheckpoint"]

META_KEY = "__checkpoint__"
FORMAT = "minigru-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, or does not fit the model/optimizer it is loaded into."""


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


def _decode(obj, arrays: dict):
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[obj["__array__"]]
        return {k: _decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
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
def _atomic_savez(path: str, arrays: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable (not possible on every OS/filesystem)
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def save_checkpoint(path, model, optimizer=None, scheduler=None, *, epoch=None, history=None, loaders=None,
                    rngs=None, extra=None) -> str:
    """Write a training checkpoint to ``path`` (one ``.npz`` file, replaced atomically).

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
    text = json.dumps(meta)
    arrays[META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    _atomic_savez(path, arrays)
    return path


# -------------------------------------------------------------------- load
def read_checkpoint(path) -> dict:
    """Decode a checkpoint file without a model: a dict with ``"model"`` (name -> NumPy array),
    ``"optimizer"``, ``"scheduler"``, ``"loaders"``, ``"epoch"``, ``"history"``, ``"extra"``, ...

    Raises FileNotFoundError for a missing file and :class:`CheckpointError`
    for a corrupt, truncated or foreign one.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r} (current folder: {os.getcwd()})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            if META_KEY not in names:
                raise CheckpointError(f"{path!r} is an .npz file but not a minigru checkpoint (it holds "
                                      f"{names[:5]}{' ...' if len(names) > 5 else ''}); plain weights can be "
                                      "loaded with model.load_state_dict(dict(np.load(path)))")
            arrays = {name: npz[name] for name in names}  # reading checks every member's CRC
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, UnicodeDecodeError, TypeError) as err:
        # NumPy's own ValueError text advises allow_pickle=True for a file it cannot read, which would run
        # any code inside a hostile file: it is never repeated. A .npy file loads as an array (TypeError).
        reason = "not an .npz archive" if isinstance(err, (ValueError, TypeError)) else f"{type(err).__name__}: {err}"
        raise CheckpointError(f"cannot read checkpoint {path!r}: the file is corrupt or truncated, or not an "
                              f".npz file ({reason})") from err
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not a minigru checkpoint (format {meta.get('format')!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path!r} was written by a newer minigru (checkpoint format "
                              f"{meta['format_version']}, this version reads up to {FORMAT_VERSION}); upgrade minigru")
    try:
        return _decode(meta, arrays)
    except KeyError as err:
        raise CheckpointError(f"checkpoint {path!r} is damaged: array {err} is missing") from err


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


def _check_class(path, what: str, saved, obj) -> None:
    if saved is None:
        raise CheckpointError(f"checkpoint {path!r} holds no {what} state, but a {what} was given to restore")
    if saved["class"] != type(obj).__name__:
        raise CheckpointError(f"checkpoint {path!r} holds the state of a {saved['class']} {what}, "
                              f"not of a {type(obj).__name__}")


def _restore_generator(generator, state, name) -> None:
    try:
        generator.bit_generator.state = state
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"cannot restore random generator {name!r}: {err}") from err


def load_checkpoint(path, model, optimizer=None, scheduler=None, *, loaders=None, rngs=None,
                    strict: bool = True) -> LoadedCheckpoint:
    """Restore a checkpoint written by :func:`save_checkpoint` into existing objects.

    The model is loaded onto its own backend and dtype; the optimizer,
    scheduler, loaders and generators given are restored too (build them
    exactly as for the original run first). The model's random generators
    (found by :func:`module_rngs`) are always restored. With ``strict``,
    missing or unexpected weights are an error; shape mismatches always are.

    Returns a :class:`LoadedCheckpoint` with the epoch, the History and ``extra``.
    """
    path = os.fspath(path)
    data = read_checkpoint(path)
    _check_model(path, data["model"], model, strict, data.get("model_class", "?"))
    if optimizer is not None:
        _check_class(path, "optimizer", data["optimizer"], optimizer)
    if scheduler is not None:
        _check_class(path, "scheduler", data["scheduler"], scheduler)
    loaders = _as_loader_dict(loaders)

    try:  # the optimizer checks everything before changing itself, so a misfit changes nothing
        if optimizer is not None:
            optimizer.load_state_dict(data["optimizer"]["state"])
        if scheduler is not None:
            scheduler.load_state_dict(data["scheduler"]["state"])
    except (ValueError, KeyError, IndexError) as err:
        raise CheckpointError(f"checkpoint {path!r}: {err}") from err
    model.load_state_dict(data["model"], strict=strict)
    for name, loader in loaders.items():
        if name in data["loaders"]:
            loader.load_state_dict(data["loaders"][name])
        else:
            warnings.warn(f"checkpoint {path!r} holds no state for loader {name!r}; its order will differ "
                          "from the original run", stacklevel=2)
    saved_rngs = data["model_rngs"]
    for name, generator in module_rngs(model).items():
        if name in saved_rngs:
            _restore_generator(generator, saved_rngs[name], name)
        else:
            warnings.warn(f"checkpoint {path!r} holds no state for the model's random generator {name!r}",
                          stacklevel=2)
    for name, generator in (rngs or {}).items():
        if name not in data["rngs"]:
            raise CheckpointError(f"checkpoint {path!r} holds no random generator {name!r} "
                                  f"(it has {sorted(data['rngs'])})")
        _restore_generator(generator, data["rngs"][name], name)
    history = data.get("history")
    return LoadedCheckpoint(epoch=data.get("epoch"),
                            history=History.from_dict(history) if history is not None else None,
                            extra=data.get("extra") or {},
                            meta={k: data[k] for k in ("format_version", "minigru_version", "created", "model_class")
                                  if k in data})
