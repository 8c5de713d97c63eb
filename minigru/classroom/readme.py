"""The README.md and pyproject.toml that make-assignment writes for students."""
from __future__ import annotations

import importlib

__all__ = ["student_readme", "student_pyproject"]


def student_pyproject() -> str:
    """A pyproject.toml that installs the student copy as ``minigru`` (``pip install -e .``)."""
    version = importlib.import_module("minigru").__version__
    return f"""[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "minigru"
version = "{version}"
description = "Your copy of minigru for this assignment"
requires-python = ">=3.10"
dependencies = ["numpy>=1.24", "pytest>=8"]

[tool.setuptools.packages.find]
include = ["minigru*"]
"""


def _exercise_section(assignment, exercise) -> str:
    places = "\n".join(f"- `{file}`, line {line}, in `{function}`" for file, line, function
                       in assignment.stripped[exercise.name])
    notebooks = assignment.notebooks.get(exercise.name, [])
    extra = ("\n\nNotebook" + ("s" if len(notebooks) > 1 else "") + ": "
             + ", ".join(f"`{n}`" for n in notebooks)) if notebooks else ""
    return (f"### `{exercise.name}`: {exercise.title} ({exercise.points} points)\n\n"
            f"{exercise.summary}\n\n{places}{extra}\n")


def _training_note(assignment) -> str:
    """How the layers run on the student's step kernels, for the recurrent exercises assigned."""
    if not assignment.layers:
        return ""
    named = [f"`{layer}`" for layer in assignment.layers]
    layers = ", ".join(named[:-1]) + " and " + named[-1] if len(named) > 1 else named[0]
    models = ", such as\n  `cnn-gru` and `row-gru`," if "nn.GRU" in assignment.layers else ""
    return ("\n- In this copy " + layers + (" runs" if len(assignment.layers) == 1 else " run")
            + " on your step kernels by default: `kernel=\"reference\"`,\n"
            "  a loop over your step forward and backward passes (`minigru/functional/reference.py`),\n"
            f"  is the default here, so the models built on {'it' if len(assignment.layers) == 1 else 'them'}"
            f"{models} train with your code once the\n"
            "  tests pass (until then they raise your exercise's `NotImplementedError`).\n"
            "  `kernel=\"fused\"` runs the library's fast sequence kernels instead.")


def student_readme(assignment, has_derivations: bool) -> str:
    """README.md of an assignment folder: what to implement, how to grade it, the rules."""
    total = sum(e.points for e in assignment.exercises)
    names = " ".join(e.name for e in assignment.exercises)
    sections = "\n".join(_exercise_section(assignment, e) for e in assignment.exercises)
    equations = ("The equations the hints cite, (G3) and so on, are derived in `docs/derivations.md`."
                 if has_derivations else "The equation numbers in the hints refer to minigru's docs/derivations.md.")
    first = assignment.exercises[0].name
    return f"""# minigru assignment: {", ".join(e.title for e in assignment.exercises)}

This folder holds a complete copy of minigru, a small deep-learning library whose
forward and backward passes are all written by hand. Some of its code has been
removed: each gap is a line

    raise NotImplementedError("Exercise <name> (<function>): <first hint>")

with `### HINT:` comments above it. Replace that line with your code. The hints
say what to compute and which variable names the code after the gap reads, so
use those names. {equations}

## What to implement ({total} points)

{sections}
## Check your work

From this folder:

    python grade.py              # every exercise of the assignment, with the score table
    python grade.py {first}          # one exercise
    python grade.py -v {first}       # ... with pytest's own output
    python -m pytest grading/test_{first}.py -q     # the raw tests

The grader runs each exercise's tests in `grading/` against the `minigru` of this
folder and prints one row per exercise (tests passed, points) with two error
columns:

- **grad check**: the largest relative error `|a - b| / (|a| + |b|)` between your
  backward pass and centred finite differences of *your* forward pass, in
  float64. A correct backward pass gives about 1e-8 or less; it must be <= 1e-6.
- **vs reference**: the largest relative error against numbers computed by the
  instructor's solution (must be <= 1e-7). A good grad check with a bad
  reference error means the forward pass itself is wrong.

Your grade comes from the same tests run by your instructor on new inputs,
drawn when they grade, against their own solution: code that is right for the
examples in `grading/reference/` only scores nothing there.

Below the table, every checked tensor is listed with its error, and each failed
test with its message (which tensor, how far off, the worst element, or the
expected shape). Points are shared equally among an exercise's tests.

## Rules

- Change only the code at the gaps; keep function names, arguments and return values.
- Editing `grading/` changes nothing but your own check: your instructor grades with their own tests.
- Keep the package importable: a syntax error in any file makes every test fail.
- Use the array module the kernel already has (`xp`), not `numpy` directly, and
  allocate with `dtype=x.dtype`: the tests run in float64.
- Exercises assigned together: {names}. The rest of the library works as usual.{_training_note(assignment)}

## Using this copy

Python run from this folder imports this copy (`python -c "import minigru; print(minigru.__file__)"`).
For notebooks or other folders, install it into your environment with
`pip install -e .`, or start Jupyter from here with `PYTHONPATH=$PWD jupyter lab`.
"""
