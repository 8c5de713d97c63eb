"""The layers of an assignment copy run on the students' step kernels.

``nn.GRU``, ``nn.LSTM`` and ``nn.RNN`` built without ``kernel=`` take their
entry of ``DEFAULT_KERNELS`` in ``minigru/nn/_recurrent.py``, keyed by the
:mod:`minigru.functional` module of their step kernels: "fused" (the fast
sequence kernels, never stripped) in the library. make-assignment rewrites that
one line in the student copy, setting "reference" (the loop over the step
kernels, :mod:`minigru.functional.reference`) for the modules whose step kernels
an assigned exercise writes, so the copy's layers, and every model built on
them (``cnn-gru``, ReNet, ...), run on the students' code by default.
"""
from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import PurePosixPath

__all__ = ["RECURRENT_FILE", "student_default_kernels", "layer_names"]

RECURRENT_FILE = "nn/_recurrent.py"
"""The file, relative to the package, that holds ``DEFAULT_KERNELS``."""

_LINE = re.compile(r"^DEFAULT_KERNELS = (\{[^\n]*\})[ \t]*$", re.MULTILINE)


def _step_modules(exercise) -> set:
    """The :mod:`minigru.functional` modules whose functions ``exercise`` has students write."""
    modules = set()
    for file, _ in exercise.functions:
        path = PurePosixPath(file)
        if path.parent.as_posix() == "functional":
            modules.add(path.stem)
    return modules


def student_default_kernels(text: str, display: str, exercises) -> tuple:
    """``(new text, switched modules)``: ``text`` of nn/_recurrent.py with ``DEFAULT_KERNELS`` set to
    "reference" for the step-kernel modules of ``exercises`` (in the dict's order), the rest unchanged.

    ValueError naming ``display`` when the file has not exactly one ``DEFAULT_KERNELS = {...}`` line
    holding a dict of kernel names, so that a refactor of the layers cannot silently leave the
    students' layers on the fused kernels.
    """
    found = _LINE.findall(text)
    if len(found) != 1:
        raise ValueError(f"{display}: expected one line 'DEFAULT_KERNELS = {{...}}' (the recurrent layers' "
                         f"default kernels), found {len(found)}; the student copy's layers could not be set "
                         "to run on the students' step kernels")
    try:
        defaults = ast.literal_eval(found[0])
    except (ValueError, SyntaxError):
        defaults = None
    if not isinstance(defaults, dict) or not all(isinstance(k, str) and v in ("fused", "reference")
                                                 for k, v in defaults.items()):
        raise ValueError(f"{display}: DEFAULT_KERNELS must be a literal dict of 'fused' / 'reference' by step "
                         f"module, got {found[0]}")
    assigned = set().union(*(_step_modules(e) for e in exercises)) if exercises else set()
    switched = [module for module in defaults if module in assigned]
    new = {module: "reference" if module in assigned else kernel for module, kernel in defaults.items()}
    line = f"DEFAULT_KERNELS = {json.dumps(new)}"
    return _LINE.sub(lambda _: line, text, count=1), switched


def layer_names(modules) -> list:
    """``["nn.GRU", ...]``: the layers whose step kernels live in ``modules`` (names of functional modules)."""
    nn = importlib.import_module("minigru.nn")
    layers = {layer.step_module: f"nn.{layer.__name__}" for layer in (nn.RNN, nn.GRU, nn.LSTM)}
    return [layers[module] for module in modules]
