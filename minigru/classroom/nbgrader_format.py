"""make-assignment --format nbgrader: the ``source/<assignment>/`` folder of an nbgrader course.

For every selected exercise, ``<exercise>.ipynb`` holds, in order:

1. a markdown cell: what to write, the points, where the equations are;
2. a read-only cell importing the helpers the kernels call, from the installed minigru;
3. one solution cell per kernel: the function as the library writes it, its
   ``### BEGIN SOLUTION`` regions and ``### HINT:`` lines in place (nbgrader's
   ``generate_assignment`` replaces each region with ``raise NotImplementedError()``);
4. one autograded cell per grading test (:mod:`minigru.classroom.grading`), with
   points: the test on the example inputs and reference numbers of
   ``<exercise>_examples.npz`` (seed 0, written here by the instructor's minigru), and
   between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` on inputs from a
   seed drawn at grading time, against the installed (the instructor's) minigru
   (:mod:`minigru.classroom.notebook_checks`). nbgrader's autograde puts the source
   versions of the test cells and of the .npz back before it runs a submission.

The selected exercises' tutorial notebooks that carry markers are copied too,
with nbgrader's solution metadata on their marked cells (practice: no points).
``nbgrader_config.py`` is written in the course folder when it has none.
"""
from __future__ import annotations

import ast
import builtins
import importlib
import json
from pathlib import Path

import numpy as np

from .markers import notebook_regions, read_notebook, write_notebook

__all__ = ["write_nbgrader_source", "exercise_notebook", "test_points", "NBGRADER_CONFIG"]

NBGRADER_CONFIG = '''# nbgrader configuration of this course (written by python -m minigru.classroom make-assignment).
c = get_config()  # noqa: F821 (nbgrader defines it)
c.CourseDirectory.course_id = "minigru"
# The autograded cells run every case of a grading test; the slowest take a few seconds.
c.ExecutePreprocessor.timeout = 120
'''


def _metadata(grade_id, *, solution=False, grade=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
            "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _cell(kind, source, cell_id, metadata=None) -> dict:
    cell = {"cell_type": kind, "id": cell_id, "metadata": metadata or {}, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _function_source(text: str, function: str):
    """``(source of the top-level def, names it reads that are not its own)``."""
    tree = ast.parse(text)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    source = "".join(text.splitlines(keepends=True)[first - 1:node.end_lineno])
    own = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
    own |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    read = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return source.rstrip("\n"), read - own


def test_points(exercise, tests) -> list[int]:
    """The exercise's points shared among its tests, whole numbers, the remainder to the first ones."""
    share, rest = divmod(exercise.points, len(tests))
    return [share + (i < rest) for i in range(len(tests))]


def exercise_notebook(exercise, scan) -> dict:
    """The source notebook of ``exercise``: kernels to complete and autograded tests (see the module docstring)."""
    grading = importlib.import_module(f"minigru.classroom.grading.{exercise.grading_module}")
    tests = [name for name, value in vars(grading).items() if name.startswith("test_") and callable(value)]
    kernels = [name for _, name in exercise.functions]
    imports, definitions = {}, []
    for relative, function in exercise.functions:
        source, names = _function_source(scan.files[relative][0], function)
        module_name = "minigru." + relative.removesuffix(".py").replace("/", ".")
        module = importlib.import_module(module_name)
        needed = sorted(n for n in names if n in vars(module) and n not in kernels and not hasattr(builtins, n))
        imports.setdefault(module_name, set()).update(needed)
        definitions.append((function, source))
    name = exercise.name
    intro = (f"# {exercise.title} ({exercise.points} points)\n\n{exercise.summary}\n\n"
             f"Complete {', '.join(f'`{k}`' for k in kernels)} below: replace each `raise NotImplementedError()` "
             "with your code, guided by the `### HINT:` lines above it (equation numbers refer to minigru's "
             "`docs/derivations.md`). Keep the names, arguments and return values.\n\n"
             "Each test cell after the kernels is graded. It checks shapes and dtypes, compares your results "
             "with the instructor's solution and your backward passes with finite differences of your forward "
             "passes, in float64. The grade also runs hidden cases on new inputs, so answers that only fit "
             "the examples score nothing.")
    cells = [_cell("markdown", intro, f"{name}-intro")]
    setup = ["# Helpers the kernels use, from minigru (run this cell first).", "import numpy as np"]
    setup += [f"from {module} import {', '.join(sorted(names))}" for module, names in imports.items() if names]
    cells.append(_cell("code", "\n".join(setup), f"{name}-setup", _metadata(f"{name}_setup", locked=True)))
    for function, source in definitions:
        cells.append(_cell("code", source, f"{name}-{function}", _metadata(function, solution=True)))
    for test, points in zip(tests, test_points(exercise, tests)):
        source = (f"# {points} point(s): {test} on example inputs; grading adds hidden inputs.\n"
                  "from minigru.classroom.notebook_checks import check\n"
                  f"check({name!r}, {test!r}, globals(), examples={name + '_examples.npz'!r})\n"
                  "### BEGIN HIDDEN TESTS\n"
                  f"check({name!r}, {test!r}, globals(), seed=None)   # a seed drawn at grading time\n"
                  "### END HIDDEN TESTS")
        cells.append(_cell("code", source, f"{name}-{test}".replace("_", "-"),
                           _metadata(test, grade=True, locked=True, points=points)))
    kernel = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return {"cells": cells, "metadata": {"kernelspec": kernel, "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def tutorial_for_nbgrader(nb: dict, where: str) -> dict:
    """A copy of a tutorial notebook whose marked cells are nbgrader solution cells, outputs cleared."""
    new = json.loads(json.dumps(nb))
    marked = {region.cell for region in notebook_regions(new, where)}
    stem = Path(where).stem
    for index, cell in enumerate(new["cells"]):
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        if index in marked:
            cell.setdefault("metadata", {}).update(_metadata(f"{stem}_cell{index}", solution=True))
    return new


def write_nbgrader_source(target: Path, exercises, scan, notebooks, examples) -> dict:
    """Write the notebooks into ``target`` (``<course>/source/<assignment>``); returns ``{exercise: [files]}``.

    ``notebooks`` maps exercise names to the ``(path, regions)`` of their tutorials (from the project),
    ``examples`` to the example inputs and reference numbers of the visible tests."""
    target.mkdir(parents=True, exist_ok=True)
    written, copied = {}, set()
    for exercise in exercises:
        write_notebook(exercise_notebook(exercise, scan), target / f"{exercise.name}.ipynb")
        np.savez(target / f"{exercise.name}_examples.npz", **examples[exercise.name])
        written[exercise.name] = [f"{exercise.name}.ipynb", f"{exercise.name}_examples.npz"]
        for path, _ in notebooks.get(exercise.name, []):
            if path.name in copied:
                continue   # matched by two selected exercises: copied once
            copied.add(path.name)
            write_notebook(tutorial_for_nbgrader(read_notebook(path), path.name), target / path.name)
            written[exercise.name].append(path.name)
    config = target.parent.parent / "nbgrader_config.py"
    if not config.exists():
        config.write_text(NBGRADER_CONFIG, encoding="utf-8")
    return written
