"""make-assignment: write a student copy of minigru with the selected exercises' solutions removed.

The assignment folder holds::

    README.md            what to implement and how to check it
    grade.py             the autograder (standard library only; see minigru/classroom/grade.py)
    pyproject.toml       so that ``pip install -e .`` makes this copy the minigru of an environment
    minigru/             the whole package, selected regions replaced by ``raise NotImplementedError``,
                         its recurrent layers set to run on the assigned step kernels (:mod:`.layers`)
    notebooks/           the selected exercises' notebooks that carry markers, stripped likewise
    docs/derivations.md  the equations the hints cite (when the library has it)
    grading/             conftest.py, test_<exercise>.py, reference/<exercise>.npz, assignment.json

The reference numbers are computed here, by the solution library that runs
make-assignment, so the tests never compare a student's code with itself.
Nothing is written outside the output folder.
"""
from __future__ import annotations

import importlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .exercises import EXERCISES, exercise_notebooks, exercise_regions, scan_package, select
from .layers import RECURRENT_FILE, layer_names, student_default_kernels
from .markers import read_notebook, strip_notebook, strip_source, write_notebook
from .nbgrader_format import write_nbgrader_source
from .readme import student_pyproject, student_readme

__all__ = ["make_assignment", "write_grading", "make_references", "library_dir", "Assignment", "GENERATED",
           "CLASSROOM_EXTRA", "require_pytest", "FORMATS"]

GENERATED = ("README.md", "grade.py", "pyproject.toml", "minigru", "notebooks", "grading", "docs/derivations.md")
"""What make-assignment writes in the output folder (and what ``force`` replaces); nothing else is touched."""


@dataclass
class Assignment:
    """What was written: per selected exercise its stripped regions ``(file, line, function)`` and notebooks;
    ``layers``, the layers that run on the students' step kernels by default (``["nn.GRU"]``)."""
    out: Path
    exercises: list
    stripped: dict = field(default_factory=dict)
    notebooks: dict = field(default_factory=dict)
    graded: list = field(default_factory=list)
    layers: list = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"Wrote the assignment to {self.out}"]
        for e in self.exercises:
            lines.append(f"  {e.name} ({e.points} points): {e.title}")
            lines += [f"      {file}:{line}  {function}" for file, line, function in self.stripped[e.name]]
            lines += [f"      {notebook}  (notebook)" for notebook in self.notebooks.get(e.name, [])]
        if not any(self.notebooks.values()):
            lines.append("  no notebook with markers was found for these exercises")
        if self.layers:
            verb = "runs" if len(self.layers) == 1 else "run"
            lines.append(f"  {', '.join(self.layers)} {verb} on the students' step kernels (kernel='reference' by "
                         "default in the copy)")
        lines.append(f"  grading tests for: {', '.join(self.graded)} (only the assigned ones count by default)")
        lines.append(f"Students run: cd {self.out} && python grade.py")
        return "\n".join(lines)


def library_dir() -> Path:
    """The folder of the imported minigru package: the solution library assignments are made from."""
    return Path(importlib.import_module("minigru").__file__).resolve().parent


def _grading_source(name: str) -> Path:
    return Path(importlib.import_module("minigru.classroom.grading").__file__).parent / f"{name}.py"


CLASSROOM_EXTRA = 'pip install "minigru[classroom]" (or, in a clone, pip install -e ".[classroom]")'
"""How to install what make-assignment and the instructor's grading need (pytest, nbgrader)."""


def require_pytest(what: str) -> None:
    """RuntimeError naming the ``classroom`` extra when pytest, which the grading tests are written for, is missing."""
    try:
        importlib.import_module("pytest")
    except ImportError as err:
        raise RuntimeError(f"{what} needs pytest (the grading tests are pytest files), which the classroom extra "
                           f"installs: {CLASSROOM_EXTRA}") from err


def make_references(exercises, seed: int = 0) -> dict:
    """``{exercise name: {key: array}}``: every exercise's inputs, drawn from ``seed``, and the reference
    numbers the solution library (the imported minigru, never a student's copy) computes from them."""
    require_pytest("make-assignment")
    functional = importlib.import_module("minigru.functional")
    references = {}
    for exercise in exercises:
        module = importlib.import_module(f"minigru.classroom.grading.{exercise.grading_module}")
        try:
            references[exercise.name] = module.make_reference(functional, seed=seed)
        except NotImplementedError as err:
            raise RuntimeError(f"the library at {library_dir()} has no solution for exercise {exercise.name} "
                               f"({err}): make assignments from the instructor's copy, which has the "
                               "solutions") from err
    return references


def write_grading(grading_dir, exercises, assigned, references, extra=None) -> None:
    """Write the grading folder: conftest.py, pytest.ini, test_<name>.py, reference/<name>.npz, assignment.json.

    ``exercises`` are all the exercises shipped, ``assigned`` the names graded by default.
    """
    grading_dir = Path(grading_dir)
    (grading_dir / "reference").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_grading_source("support"), grading_dir / "conftest.py")
    (grading_dir / "pytest.ini").write_text(
        "[pytest]\n# The grading tests of this assignment; grade.py runs them one exercise at a time.\n"
        "python_files = test_*.py\n", encoding="utf-8")
    for exercise in exercises:
        shutil.copyfile(_grading_source(exercise.grading_module), grading_dir / f"test_{exercise.name}.py")
        np.savez(grading_dir / "reference" / f"{exercise.name}.npz", **references[exercise.name])
    description = {
        "minigru_version": importlib.import_module("minigru").__version__,
        "assigned": [e.name for e in exercises if e.name in assigned],
        "exercises": {e.name: {"title": e.title, "points": e.points, "assigned": e.name in assigned,
                               "functions": [f"{file}:{function}" for file, function in e.functions]}
                      for e in exercises},
        **(extra or {}),
    }
    (grading_dir / "assignment.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")


def _check_output_dir(out: Path, library: Path, force: bool, written=", ".join(GENERATED)) -> None:
    if out == library or out in library.parents or library in out.parents:
        raise ValueError(f"refusing to write the assignment into {out}: it overlaps the library it is made "
                         f"from ({library}); choose a folder that neither holds it nor lies inside it")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} is not empty; pass --force to replace what make-assignment writes there "
                              f"({written})")


def _inside(out: Path, path: Path) -> Path:
    """``path``, after checking that it resolves inside ``out`` (a symlink must not lead elsewhere)."""
    resolved = path.resolve()
    if resolved != out and out not in resolved.parents:
        raise ValueError(f"refusing to write {path}: it resolves to {resolved}, outside {out}")
    return path


def _clear_generated(out: Path) -> None:
    for name in GENERATED:
        path = out / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(_inside(out, path))


FORMATS = ("plain", "nbgrader")


def make_assignment(out, only=None, force=False, project_dir=None, log=None, fmt="plain",
                    name=None) -> Assignment:
    """Write an assignment for the exercises ``only`` (names or "a,b"; all if None) into ``out``.

    ``fmt`` "plain": ``out`` becomes the student copy described above.
    ``fmt`` "nbgrader": ``out`` is an nbgrader course folder and the notebooks
    go to ``out/source/<name>/`` (:mod:`.nbgrader_format`; ``name`` defaults to
    the exercise names joined by "-"). ``project_dir`` is where ``notebooks/``
    are looked for (default: the folder holding the minigru package). Raises
    ValueError for unknown exercises or a missing region, MarkerError for
    malformed markers, FileExistsError when the target is not empty and
    ``force`` is False.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    chosen = select(only)
    library = library_dir()
    project = Path(project_dir).resolve() if project_dir is not None else library.parent
    if fmt == "nbgrader":
        return _make_nbgrader(Path(out).resolve(), chosen, name or "-".join(e.name for e in chosen), force,
                              library, project, log)
    if name is not None:
        raise ValueError("--name is the nbgrader assignment's name: use it with --format nbgrader")
    out = Path(out).resolve()
    _check_output_dir(out, library, force)

    # Everything is checked and computed before the first write.
    scan = scan_package(library)
    to_strip, assignment = {}, Assignment(out, chosen)
    for exercise in chosen:
        regions, missing = exercise_regions(exercise, scan)
        if missing:
            raise ValueError(f"exercise {exercise.name} cannot be made: " + "; ".join(missing))
        for relative, region in regions:
            to_strip.setdefault(relative, {})[(region.begin, region.function)] = exercise.name
    notebooks = {e.name: exercise_notebooks(e, project) for e in chosen}
    _, switched = student_default_kernels(scan.files[RECURRENT_FILE][0], scan.display(RECURRENT_FILE), chosen)
    assignment.layers = layer_names(switched)
    shipped = [e for e in EXERCISES if _grading_source(e.grading_module).exists()]
    references = make_references(shipped)

    if force and out.exists():
        _clear_generated(out)
    out.mkdir(parents=True, exist_ok=True)
    package = _inside(out, out / library.name)
    shutil.copytree(library, package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.egg-info"))
    for relative, owners in to_strip.items():
        text = scan.files[relative][0]
        new_text, done = strip_source(text, scan.display(relative),
                                      lambda region: owners.get((region.begin, region.function)))
        _inside(out, package / relative).write_text(new_text, encoding="utf-8")
        for region, name, line in done:
            assignment.stripped.setdefault(name, []).append((scan.display(relative), line, region.function))
    recurrent = _inside(out, package / RECURRENT_FILE)
    recurrent.write_text(student_default_kernels(recurrent.read_text(encoding="utf-8"), scan.display(RECURRENT_FILE),
                                                 chosen)[0], encoding="utf-8")
    for name, found in notebooks.items():
        for path, _ in found:
            relative = path.relative_to(project).as_posix()
            if any(relative in written for written in assignment.notebooks.values()):
                continue   # matched by two selected exercises: stripped once, for the first
            target = _inside(out, out / relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            new_nb, _ = strip_notebook(read_notebook(path), relative, name)
            write_notebook(new_nb, target)
            assignment.notebooks.setdefault(name, []).append(relative)
    derivations = project / "docs" / "derivations.md"
    if derivations.exists():
        _inside(out, out / "docs").mkdir(exist_ok=True)
        shutil.copyfile(derivations, _inside(out, out / "docs" / "derivations.md"))
    grading = _inside(out, out / "grading")
    write_grading(grading, shipped, {e.name for e in chosen}, references,
                  extra={"notebooks": assignment.notebooks})
    assignment.graded = [e.name for e in shipped]
    shutil.copyfile(Path(__file__).with_name("grade.py"), _inside(out, out / "grade.py"))
    _inside(out, out / "pyproject.toml").write_text(student_pyproject(), encoding="utf-8")
    _inside(out, out / "README.md").write_text(student_readme(assignment, derivations.exists()), encoding="utf-8")
    if log:
        log(assignment.summary())
    return assignment


def _make_nbgrader(course: Path, chosen, name: str, force: bool, library: Path, project: Path, log) -> Assignment:
    """``make_assignment(fmt="nbgrader")``: write ``course/source/<name>/``."""
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"invalid assignment name {name!r}: use a plain folder name such as hw1")
    target = course / "source" / name
    _check_output_dir(target, library, force, "<exercise>.ipynb, <exercise>_examples.npz and the tutorials")
    require_pytest("make-assignment --format nbgrader")
    scan = scan_package(library)
    for exercise in chosen:
        _, missing = exercise_regions(exercise, scan)
        if missing:
            raise ValueError(f"exercise {exercise.name} cannot be made: " + "; ".join(missing))
    notebooks = {e.name: exercise_notebooks(e, project) for e in chosen}
    written = write_nbgrader_source(_inside(course, target), chosen, scan, notebooks, make_references(chosen))
    assignment = Assignment(target, chosen, notebooks=written)
    if log:
        lines = [f"Wrote the nbgrader assignment {name} to {target}"]
        for e in chosen:
            lines.append(f"  {e.name} ({e.points} points): {e.title}: " + ", ".join(written[e.name]))
        lines.append(f"Next, in {course}: nbgrader generate_assignment {name}   (see docs/classroom.md)")
        log("\n".join(lines))
    return assignment
