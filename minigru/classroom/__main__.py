"""Command line: ``python -m minigru.classroom {list, make-assignment, grade}``."""
from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from pathlib import Path

from .._shadow import exit_if_shadowed
from . import grade as grader
from .exercises import (EXERCISES, MarkerError, exercise_notebooks, exercise_regions, scan_package, select,
                        self_containment_problems, unassigned_regions)
from .make import FORMATS, library_dir, make_assignment, make_references, write_grading


def list_exercises(project_dir=None) -> int:
    """Print every exercise with its regions and notebooks; problems last. Returns the exit status."""
    library = library_dir()
    scan = scan_package(library)
    project = Path(project_dir) if project_dir else library.parent
    problems = []
    for e in EXERCISES:
        regions, missing = exercise_regions(e, scan)
        print(f"{e.name:<10} {e.points:>3} points  {e.title}")
        for _, region in regions:
            hint = f"  hint: {region.hints[0][:60]}..." if region.hints else "  (no hint)"
            print(f"    {region.location:<40} {region.function}{hint}")
        for path, found in exercise_notebooks(e, project):
            print(f"    {path.relative_to(project).as_posix():<40} notebook, {len(found)} region(s)")
        problems += [f"{e.name}: {m}" for m in missing]
    for region in unassigned_regions(scan):
        problems.append(f"{region.location} ({region.function}) belongs to no exercise (never stripped)")
    problems += self_containment_problems(scan)
    if problems:
        print("\nProblems:\n  " + "\n  ".join(problems))
    return 1 if problems else 0


def _graded_exercises(names, all_exercises, assignment) -> list:
    """The exercises to grade: named, all, or those the instructor's assignment folder assigns. Never read
    from the submission, whose grading/assignment.json a student could have edited."""
    if names:
        return select(names)
    if all_exercises:
        return list(EXERCISES)
    if assignment:
        assigned = grader.load_assignment(Path(assignment).resolve() / "grading")["assigned"]
        return [e for e in EXERCISES if e.name in assigned]
    raise ValueError("say which exercises to grade: name them (grade SUBMISSION gru conv), or pass --assignment "
                     "with the folder make-assignment wrote, or --all (a submission's own grading/ is not trusted)")


def grade_folder(folder, names, all_exercises, assignment, seed, timeout, quiet, verbose, json_path) -> int:
    """Grade a submission with hidden tests: the grading tests of this (the instructor's) library, written to a
    scratch folder, on inputs drawn from ``seed`` (a secret random one when None) and reference numbers this
    library computes from them. The submission's grading/ (tests and reference numbers) is never used."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder (give the student's assignment folder)")
    library = library_dir()
    if root == library or root in library.parents:
        raise ValueError(f"the minigru imported here ({library}) is the submission's own copy, which cannot be "
                         "its own reference: run the grader from another folder, with your (the instructor's) "
                         "minigru installed")
    wanted = _graded_exercises(names, all_exercises, assignment)
    seed = secrets.randbits(32) if seed is None else seed
    with tempfile.TemporaryDirectory(prefix="minigru-hidden-grading-") as scratch:
        write_grading(scratch, wanted, {e.name for e in wanted}, make_references(wanted, seed=seed))
        results = grader.grade(root, grading_dir=scratch, timeout=timeout)
    for result in results:
        result.seed = seed
    return grader.report(results, root, quiet, verbose, json_path)


def main(argv=None) -> int:
    exit_if_shadowed()
    parser = argparse.ArgumentParser(prog="python -m minigru.classroom",
                                     description="Assignments from minigru: list the exercises, write a student "
                                                 "copy with solutions removed, grade it (docs/classroom.md).")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="exercises, their marked regions and notebooks")
    listing.add_argument("--project", help="folder whose notebooks/ are searched (default: the repository)")
    make = commands.add_parser("make-assignment", help="write a student copy with solutions removed")
    make.add_argument("--out", required=True, help="assignment folder to write (must be empty, or --force)")
    make.add_argument("--only", help="comma-separated exercises (default: all): " + ",".join(e.name for e in EXERCISES))
    make.add_argument("--force", action="store_true", help="replace what an earlier make-assignment wrote in --out")
    make.add_argument("--project", help="folder whose notebooks/ are searched (default: the repository)")
    make.add_argument("--format", choices=FORMATS, default="plain",
                      help="plain: a student copy of minigru with grade.py; nbgrader: --out is an nbgrader course "
                           "folder, the notebooks go to its source/<name>/")
    make.add_argument("--name", help="nbgrader assignment name (default: the exercise names joined by '-')")
    grade = commands.add_parser("grade", help="grade a submission with hidden tests and print the score table")
    grade.add_argument("folder", help="the assignment folder (a student's submission)")
    grade.add_argument("exercises", nargs="*", help="exercises to grade (or --assignment, or --all)")
    grade.add_argument("--assignment", metavar="DIR",
                       help="the folder make-assignment wrote: grade the exercises it assigns")
    grade.add_argument("--all", action="store_true", help="grade every exercise")
    grade.add_argument("--seed", type=int,
                       help="seed of the test inputs (default: a secret random one, printed with the scores)")
    grade.add_argument("--timeout", type=float, default=grader.DEFAULT_TIMEOUT, help="seconds per exercise")
    grade.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    grade.add_argument("-q", "--quiet", action="store_true", help="print the score table only")
    grade.add_argument("-v", "--verbose", action="store_true", help="also print pytest's output")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return list_exercises(args.project)
        if args.command == "make-assignment":
            make_assignment(args.out, args.only, args.force, project_dir=args.project, log=print, fmt=args.format,
                            name=args.name)
            return 0
        return grade_folder(args.folder, args.exercises or None, args.all, args.assignment, args.seed,
                            args.timeout, args.quiet, args.verbose, args.json)
    except (MarkerError, ValueError, FileExistsError, FileNotFoundError, NotADirectoryError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
