"""Fixtures and checks shared by the grading tests (copied into an assignment as grading/conftest.py).

The tests grade the ``minigru`` package of the assignment folder (the parent
of this folder, or ``$MINIGRU_STUDENT_ROOT``), never an installed one: the
``minigru`` fixture checks where the package was imported from.

Three kinds of checks, each failing with a message that names the kernel, the
tensor and how far off it is:

* shapes and dtypes of what a kernel returns;
* comparison with reference numbers computed by the instructor's solution
  (``reference/<exercise>.npz``, written when the assignment was made);
* finite-difference gradient checks in float64 (:mod:`minigru.gradcheck`):
  your backward pass against the numerical derivative of your forward pass.

When ``$MINIGRU_GRADING_LOG`` names a file, every check and test result is
appended to it as one JSON line; the grader (grade.py) reads it to print the
score table.
"""
import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

GRADING_DIR = Path(__file__).resolve().parent
STUDENT_ROOT = Path(os.environ.get("MINIGRU_STUDENT_ROOT") or GRADING_DIR.parent).resolve()
GRADCHECK_TOL = 1e-6     # max relative error against finite differences (float64)
REFERENCE_TOL = 1e-7     # max relative error against the reference solution (float64)
GRADCHECK_EPS = 1e-5     # finite-difference step


def _log(record):
    path = os.environ.get("MINIGRU_GRADING_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")


def pytest_collection_finish(session):
    for item in session.items:
        _log({"kind": "collected", "test": item.nodeid})


def _failure_message(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return text.strip()


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        _log({"kind": "result", "test": report.nodeid, "when": report.when, "outcome": report.outcome,
              "message": _failure_message(report) if report.failed else ""})


@pytest.fixture(scope="session")
def minigru():
    """The student's minigru package, imported from the assignment folder."""
    try:
        module = importlib.import_module("minigru")
    except Exception as err:  # a syntax error in a kernel stops the whole package from importing
        pytest.fail(f"your minigru package does not import: {type(err).__name__}: {err}", pytrace=False)
    where = Path(module.__file__).resolve()
    _log({"kind": "import", "file": str(where)})
    if STUDENT_ROOT not in where.parents:
        pytest.fail(f"minigru was imported from {where}, not from the assignment folder {STUDENT_ROOT}; run the "
                    "grader from the assignment folder (python grade.py)", pytrace=False)
    # grade the NumPy code the student wrote: with MINIGRU_ENGINE=numba, compiled kernels would replace parts of it
    module.engine.set_engine("numpy")
    return module


@pytest.fixture
def F(minigru):
    """The student's ``minigru.functional``."""
    return minigru.functional


@pytest.fixture
def grader(request, minigru):
    """Checks bound to the running test: ``grader.reference(case)``, ``compare``, ``gradcheck``."""
    return Grader(minigru, request.module.EXERCISE, request.node.nodeid)


def _worst(actual, expected):
    """(index, actual value, expected value) where the relative error is largest."""
    a, b = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    errors = np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))
    errors = np.where(np.isnan(errors), np.inf, errors)
    index = np.unravel_index(int(np.argmax(errors)), a.shape) if a.ndim else ()
    return tuple(int(i) for i in index), float(a[index]), float(b[index])


class Grader:
    """Shape, dtype and value checks that record what they measured and fail with a helpful message."""

    def __init__(self, minigru, exercise, test):
        self.gradcheck_module = minigru.gradcheck
        self.to_numpy = minigru.backend.to_numpy
        self.exercise, self.test = exercise, test

    def reference(self, case) -> dict:
        """The reference arrays of one test case (fresh writable float copies), by name."""
        path = GRADING_DIR / "reference" / f"{self.exercise}.npz"
        if not path.exists():
            pytest.fail(f"reference numbers {path} are missing; ask your instructor for the grading folder",
                        pytrace=False)
        prefix = f"{case}."
        with np.load(path, allow_pickle=False) as data:
            return {key[len(prefix):]: data[key].copy() for key in data.files if key.startswith(prefix)}

    def unpack(self, kernel, returned, names):
        """``dict(zip(names, returned))`` after checking that ``kernel`` returned a tuple of that length."""
        if not isinstance(returned, (tuple, list)) or len(returned) != len(names):
            got = f"a {type(returned).__name__}" + (f" of length {len(returned)}"
                                                     if isinstance(returned, (tuple, list)) else "")
            pytest.fail(f"{kernel} must return a tuple of {len(names)} values ({', '.join(names)}), got {got}",
                        pytrace=False)
        return dict(zip(names, returned))

    def _check_array(self, kernel, name, actual, like, role):
        """A problem message, or None when ``actual`` is an array of ``like``'s shape and dtype."""
        if like is None:
            return None if actual is None else f"{kernel}: {name} must be None here, got {type(actual).__name__}"
        if actual is None:
            return f"{kernel}: {name} is None; expected an array of shape {tuple(like.shape)}"
        try:
            actual = self.to_numpy(actual)
        except TypeError:
            return f"{kernel}: {name} must be an array, got {type(actual).__name__}"
        if tuple(actual.shape) != tuple(like.shape):
            return f"{kernel}: {name} has shape {tuple(actual.shape)}, expected {tuple(like.shape)} ({role})"
        if actual.dtype != like.dtype:
            return (f"{kernel}: {name} has dtype {actual.dtype}, expected {like.dtype} (allocate with "
                    "dtype=x.dtype so float64 inputs give float64 results)")
        return None

    def _record(self, kernel, name, method, case, error, tol):
        _log({"kind": "check", "test": self.test, "exercise": self.exercise, "kernel": kernel, "tensor": name,
              "method": method, "case": case, "rel_error": error, "tol": tol, "passed": bool(error <= tol)})

    def _finish(self, problems):
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    def compare(self, kernel, case, actual: dict, expected: dict, tol=REFERENCE_TOL):
        """Every ``actual[name]`` against the reference ``expected[name]`` (None: must be None)."""
        problems = []
        for name, want in expected.items():
            problem = self._check_array(kernel, name, actual.get(name), want, "the reference solution's shape")
            if problem or want is None:
                problems += [problem] if problem else []
                continue
            got = self.to_numpy(actual[name])
            error = float(self.gradcheck_module.rel_error(got, want))
            error = float("inf") if np.isnan(error) else error
            self._record(kernel, name, "reference", case, error, tol)
            if not error <= tol:
                index, mine, theirs = _worst(got, want)
                problems.append(f"{kernel} [{case}]: {name} differs from the reference solution: max relative "
                                f"error {error:.2e} > {tol:.0e} (worst at index {index}: yours {mine:.6g}, "
                                f"expected {theirs:.6g})")
        self._finish(problems)

    def gradcheck(self, kernel, case, forward, dout, pairs, tol=GRADCHECK_TOL):
        """Check each ``(name, analytic gradient, input array)`` of ``pairs`` against centred differences.

        ``forward()`` recomputes the forward output(s) from the input arrays,
        which are perturbed in place one element at a time; ``dout`` is the
        upstream gradient (a list for several outputs).
        """
        problems = []
        for name, analytic, array in pairs:
            problem = self._check_array(kernel, name, analytic, array, "the shape of the input it is the gradient of")
            if problem:
                problems.append(problem)
                continue
            analytic = self.to_numpy(analytic)
            # the comparison of `minigru gradcheck`: relative, with a floor for entries near the noise
            result = self.gradcheck_module.check_gradient(analytic, lambda _: forward(), array, dout,
                                                          eps=GRADCHECK_EPS, tol=tol)
            error = result.error
            self._record(kernel, name, "gradcheck", case, error, tol)
            if not error <= tol:
                index = result.worst
                mine, theirs = float(analytic[index]), float(result.numeric[index])
                problems.append(f"{kernel} [{case}]: {name} differs from the finite-difference gradient of your "
                                f"forward pass: max relative error {error:.2e} > {tol:.0e} (worst at index {index}: "
                                f"yours {mine:.6g}, numerical {theirs:.6g})")
        self._finish(problems)
