"""Grading tests run inside a notebook: the autograded cells of ``make-assignment --format nbgrader``.

A test cell calls::

    check("gru", "test_gru_step_forward", globals(), examples="gru_examples.npz")   # what students see
    check("gru", "test_gru_step_forward", globals(), seed=None)                     # hidden

``check`` runs one test function of :mod:`minigru.classroom.grading` (every
case of its parametrisation) on the kernels the student defined in the
notebook (``namespace``). The visible call reads its inputs and reference
numbers from the ``.npz`` shipped with the notebook (written by the
instructor's minigru, seed 0), so students can check their work with a copy of
minigru that lacks the solutions. The hidden call draws new inputs from a seed
chosen at grading time and computes the reference numbers with the *installed*
minigru: when nbgrader autogrades, the instructor's. Kernels the exercise does
not ask for (a given forward pass, say) come from the installed minigru too.
A failure raises :class:`CheckFailed` (an AssertionError) listing every failing case with the message of
the plain grader (which tensor, how far off, the worst element).
"""
from __future__ import annotations

import importlib
import itertools
import secrets
import textwrap
import types

import numpy as np

from .exercises import select

__all__ = ["check", "parametrizations", "CheckFailed"]

WIDTH = 100
"""Failure messages are wrapped to this many characters: notebook and feedback pages cut longer lines."""


class CheckFailed(AssertionError):
    """A grading check that failed. Jupyter shows its message alone: the traceback would lead into the
    grading code, which tells a student nothing (IPython calls ``_render_traceback_`` when it exists)."""

    def _render_traceback_(self) -> list[str]:
        lines = str(self).splitlines() or [""]
        return [f"{type(self).__name__}: {lines[0]}"] + lines[1:]


def _wrapped(message: str) -> str:
    return "\n".join(textwrap.fill(line, WIDTH, subsequent_indent="    ") for line in message.splitlines())


def parametrizations(test) -> list[dict]:
    """The keyword arguments of every case of a pytest test function (its ``parametrize`` marks)."""
    axes = []
    for mark in getattr(test, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], list(mark.args[1])
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        axes.append([dict(zip(names, v if len(names) > 1 else (v,))) for v in values])
    return [dict(item for case in combination for item in case.items()) for combination in itertools.product(*axes)]


def _student_functional(exercise, namespace, reference):
    """``minigru.functional`` with the exercise's kernels replaced by the notebook's own functions."""
    student = types.SimpleNamespace(**{k: getattr(reference, k) for k in dir(reference) if not k.startswith("__")})
    for _, name in exercise.functions:
        function = namespace.get(name)
        if not callable(function):
            raise CheckFailed(f"{name} is not defined: run the cell that defines it first")
        if getattr(function, "__module__", None) != namespace.get("__name__"):
            raise CheckFailed(f"{name} must be written in this notebook (it comes from {function.__module__})")
        setattr(student, name, function)
    return student


def _reference_numbers(module, minigru, seed) -> dict:
    seed = secrets.randbits(32) if seed is None else seed
    try:
        return module.make_reference(minigru.functional, seed=seed)
    except NotImplementedError as err:
        raise RuntimeError(f"the hidden tests need the instructor's minigru, with the solutions; the one installed "
                           f"here ({minigru.__file__}) has none for exercise {module.EXERCISE}: {err}") from None


def check(exercise: str, test: str, namespace: dict, examples=None, seed: int | None = None) -> None:
    """Run grading test ``test`` of ``exercise`` on the notebook's kernels; CheckFailed if any case fails.

    ``examples``: an .npz of inputs and reference numbers. Without it, inputs are drawn from ``seed``
    (None: a secret one, drawn now) and the installed minigru computes the reference numbers."""
    import pytest  # the grading modules are pytest files; the classroom extra installs it

    minigru = importlib.import_module("minigru")
    support = importlib.import_module("minigru.classroom.grading.support")
    module = importlib.import_module(f"minigru.classroom.grading.{exercise}")
    if examples is not None:
        with np.load(examples, allow_pickle=False) as shipped:
            data = {key: shipped[key] for key in shipped.files}
    else:
        data = _reference_numbers(module, minigru, seed)
    student = _student_functional(select([exercise])[0], namespace, minigru.functional)

    class Grader(support.Grader):
        def reference(self, case):
            prefix = f"{case}."
            return {key[len(prefix):]: value.copy() for key, value in data.items() if key.startswith(prefix)}

    cases = parametrizations(getattr(module, test))
    failures = []
    for params in cases:
        label = ", ".join(f"{v}" for v in params.values())
        try:
            getattr(module, test)(F=student, grader=Grader(minigru, exercise, test), **params)
        except pytest.fail.Exception as failed:
            failures.append(str(failed.msg if hasattr(failed, "msg") else failed))
        except Exception as err:  # the student's code raised: report it like the plain grader does
            failures.append(f"[{label}] {type(err).__name__}: {err}")
    inputs = "the example inputs" if examples is not None else "new inputs drawn at grading time (hidden tests)"
    if failures:
        raise CheckFailed("\n".join(_wrapped(line) for line in
                                    [f"{test}: {len(failures)} of {len(cases)} case(s) failed on {inputs}"] + failures))
    print(f"{test}: all {len(cases)} case(s) passed on {inputs}")
