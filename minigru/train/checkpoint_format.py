"""What a checkpoint's metadata must look like, and the checks that a file and its states fit it.

:mod:`minigru.train.checkpoint` writes the metadata (JSON text in the member
``__checkpoint__``) and relies on these checks when it reads one back: a file
that passes them can be decoded and restored without a raw exception, and one
that does not is a :class:`CheckpointError` naming it.
"""
from __future__ import annotations

import copy
import json

import numpy as np

from .. import backend
from .checkpoint_file import CheckpointError, array_digest

__all__ = ["META_KEY", "FORMAT", "FORMAT_VERSION", "damaged", "parse_meta", "check_digests", "check_like"]

META_KEY = "__checkpoint__"
FORMAT = "minigru-checkpoint"
FORMAT_VERSION = 1


def damaged(path: str, what: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path!r} is damaged or was not written by minigru: {what}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_state(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get("class"), str) and isinstance(value.get("state"), dict)


# key: (check, description, value when absent); "model" must be present
_FIELDS = {
    "model": (lambda v: isinstance(v, dict), "an object of arrays", None),
    "model_class": (lambda v: isinstance(v, str), "a string", "?"),
    "model_rngs": (lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
                   "an object of generator states", {}),
    "rngs": (lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
             "an object of generator states", {}),
    "epoch": (lambda v: v is None or (_is_int(v) and v >= 0), "null or a count of epochs", None),
    "history": (lambda v: v is None or isinstance(v, dict), "null or an object", None),
    "optimizer": (lambda v: v is None or _is_state(v), 'null or {"class": ..., "state": {...}}', None),
    "scheduler": (lambda v: v is None or _is_state(v), 'null or {"class": ..., "state": {...}}', None),
    "loaders": (lambda v: isinstance(v, dict), "an object of loader states", {}),
    "extra": (lambda v: isinstance(v, dict), "an object", {}),
    "arrays": (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
               "an object of array digests", None),
}


def parse_meta(path: str, arrays: dict) -> dict:
    """Pop the metadata member from ``arrays`` and return it as a dict whose fields all have their
    documented JSON types (absent optional fields filled in); CheckpointError naming ``path`` otherwise."""
    if META_KEY not in arrays:
        names = sorted(arrays)
        raise CheckpointError(f"{path!r} is an .npz file but not a minigru checkpoint (it holds "
                              f"{names[:5]}{' ...' if len(names) > 5 else ''}); plain weights can be "
                              "loaded with model.load_state_dict(dict(np.load(path)))")
    raw = arrays.pop(META_KEY)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise damaged(path, f"its metadata is a {raw.dtype} array of shape {raw.shape}, not UTF-8 text")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise damaged(path, f"its metadata is not JSON text ({type(err).__name__}: {err})") from err
    if not isinstance(meta, dict):
        raise damaged(path, f"its metadata is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not a minigru checkpoint (format {meta.get('format')!r})")
    version = meta.get("format_version", 0)
    if not _is_int(version):
        raise damaged(path, f"format_version is {version!r}, not an integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path!r} was written by a newer minigru (checkpoint format "
                              f"{version}, this version reads up to {FORMAT_VERSION}); upgrade minigru")
    if "model" not in meta:
        raise damaged(path, "its metadata has no 'model' entry")
    for key, (check, description, default) in _FIELDS.items():
        if key not in meta:
            meta[key] = copy.deepcopy(default)  # never hand out the table's own dict
        elif not check(meta[key]):
            raise damaged(path, f"'{key}' must be {description}, found {json.dumps(meta[key])[:80]}")
    return meta


def check_digests(path: str, digests: dict, arrays: dict) -> None:
    """The file holds exactly the arrays that were saved, each with the SHA-256 recorded at saving."""
    missing = sorted(set(digests) - set(arrays))
    unexpected = sorted(set(arrays) - set(digests))
    if missing or unexpected:
        raise damaged(path, f"arrays {missing} are missing and {unexpected} were not written by save_checkpoint"
                       if missing and unexpected else
                       f"arrays {missing} are missing" if missing else
                       f"arrays {unexpected} were not written by save_checkpoint")
    changed = [name for name in sorted(arrays) if array_digest(arrays[name]) != digests[name]]
    if changed:
        raise damaged(path, f"array {changed[0]!r}{f' (and {len(changed) - 1} more)' if len(changed) > 1 else ''} "
                       "does not match the SHA-256 recorded when it was saved")


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, np.number)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "list"
    return {str: "text", dict: "object"}.get(type(value), "array" if backend.is_array(value) else type(value).__name__)


def check_like(path: str, what: str, saved, current, allow_new_keys: bool, where: str = "") -> None:
    """Refuse a saved state whose values are of other kinds than the live object's own state (and, with
    ``allow_new_keys=False``, one with keys that state lacks), before it is handed to ``load_state_dict``.

    The schedulers restore their state with ``__dict__.update``: without this, a damaged file could set any
    attribute (even replace ``step``) to anything. A null on either side is accepted (a value set later).
    """
    if saved is None or current is None:
        return
    kind, expected = _kind(saved), _kind(current)
    if kind != expected:
        raise CheckpointError(f"checkpoint {path!r}: the saved {what}{where} is a {kind} where this {what} "
                              f"holds a {expected}")
    if kind == "object":
        extra = sorted(set(saved) - set(map(str, current)))
        if extra and not allow_new_keys:
            raise CheckpointError(f"checkpoint {path!r}: the saved {what}{where} has entries {extra} that this "
                                  f"{what} does not have")
        for key, value in current.items():
            if str(key) in saved:
                check_like(path, what, saved[str(key)], value, allow_new_keys, f"{where}[{str(key)!r}]")
    elif kind == "list":
        for i, (a, b) in enumerate(zip(saved, current)):
            check_like(path, what, a, b, allow_new_keys, f"{where}[{i}]")
