"""minigru.classroom: assignments generated from the library, graded by gradient checks.

Kernels mark their core computation with nbgrader-style regions
(``### BEGIN SOLUTION`` / ``### END SOLUTION``, hints in ``### HINT:`` lines
above). An instructor writes a student copy with some exercises removed (or an
nbgrader course's source folder), and grades it with hidden tests: new inputs,
finite-difference gradient checks and comparisons with the solution's numbers::

    python -m minigru.classroom list
    python -m minigru.classroom make-assignment --out hw1 --only gru,conv
    cd hw1 && python grade.py                                      # what students run
    python -m minigru.classroom grade submissions/alice --assignment hw1   # what instructors run
    python -m minigru.classroom make-assignment --format nbgrader --out course --only gru --name hw1

Modules: :mod:`.markers` (parse and strip regions), :mod:`.exercises` (the
registry), :mod:`.make` (write an assignment), :mod:`.nbgrader_format` (the
nbgrader notebooks), :mod:`.notebook_checks` (their autograded checks),
:mod:`.grade` (the autograder), :mod:`.grading` (the grading tests);
``minigru.classroom.grade.grade(folder)`` grades from Python.
See docs/classroom.md.
"""
from .exercises import EXERCISES, Exercise, scan_package, select
from .make import make_assignment
from .markers import MarkerError, Region, find_regions, strip_notebook, strip_source

__all__ = ["EXERCISES", "Exercise", "MarkerError", "Region", "find_regions", "make_assignment", "scan_package",
           "select", "strip_notebook", "strip_source"]
