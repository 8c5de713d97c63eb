"""Grading tests of the classroom exercises, one module per exercise.

These modules are pytest files, not library code: ``make-assignment`` copies
``support.py`` into an assignment as ``grading/conftest.py`` and ``<name>.py``
as ``grading/test_<name>.py``, where they run against the student's copy of
minigru. Each module defines ``EXERCISE``, its ``CASES`` (tiny shapes, so a
whole assignment grades in seconds), the tests, and ``make_reference(F)``,
which the instructor's solution library runs to produce the reference numbers
(``grading/reference/<name>.npz``). Importing a module here needs pytest.
"""
