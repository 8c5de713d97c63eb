"""The autograder: run each exercise's grading tests against a student copy and print a score table.

This file uses the standard library only, because ``make-assignment`` copies
it into the assignment as ``grade.py``: it must run even when the student's
minigru does not import. Each exercise's tests (``grading/test_<name>.py``) run
in their own pytest process, with the assignment folder first on the path (so
``import minigru`` finds the student's copy; the tests check that), and a time
limit, so one broken exercise cannot take the others down.

Usage, in the assignment folder::

    python grade.py                 # the assigned exercises
    python grade.py gru conv        # some of them
    python grade.py --all           # every exercise shipped in grading/
    python grade.py -v gru          # also show pytest's own output

Exit status: 0 when every graded test passed, 1 when some failed, 2 when
grading itself could not run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ExerciseResult", "load_assignment", "grade", "format_report", "main"]

DEFAULT_TIMEOUT = 300


@dataclass
class ExerciseResult:
    """Outcome of one exercise: per-test results, recorded checks and the score."""
    name: str
    points: float
    outcomes: dict = field(default_factory=dict)   # test id -> (outcome, message)
    checks: list = field(default_factory=list)      # records logged by the grading tests
    imported_from: str | None = None
    error: str | None = None                        # why the run did not finish, if it did not
    output: str = ""
    seed: int | None = None                         # seed of the inputs, when the instructor drew them

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def passed(self) -> int:
        return sum(outcome == "passed" for outcome, _ in self.outcomes.values())

    @property
    def score(self) -> float:
        return self.points * self.passed / self.total if self.total else 0.0

    def worst(self, method: str) -> float | None:
        """Largest relative error of the ``method`` checks ("gradcheck" or "reference"), None if none ran."""
        errors = [c["rel_error"] for c in self.checks if c["method"] == method]
        return max(errors) if errors else None

    def not_implemented(self) -> list[str]:
        """Kernels whose tests stopped at the NotImplementedError of a stripped region."""
        found = []
        for outcome, message in self.outcomes.values():
            if outcome != "passed" and message.startswith("NotImplementedError: Exercise"):
                head = message.split(":", 2)[1]
                name = head[head.find("(") + 1:head.find(")")] if "(" in head else head.strip()
                if name not in found:
                    found.append(name)
        return found


def load_assignment(grading_dir) -> dict:
    """The assignment description written by make-assignment (grading/assignment.json)."""
    path = Path(grading_dir) / "assignment.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {Path(grading_dir)} is not the grading folder of an assignment")
    return json.loads(path.read_text(encoding="utf-8"))


def _read_log(path) -> list[dict]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _grading_env(root: Path, log: Path) -> dict:
    """The environment of a grading run: ``root`` first on the path, a log file, no third-party plugins."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(MINIGRU_STUDENT_ROOT=str(root), MINIGRU_GRADING_LOG=str(log), PYTHONDONTWRITEBYTECODE="1",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")   # third-party plugins only slow the start-up
    return env


def _run_pytest(command, root, env, timeout):
    """``(exit status or None when stopped at the time limit, output)``."""
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as stopped:
        output = stopped.stdout or ""
        return None, output.decode(errors="replace") if isinstance(output, bytes) else output
    return done.returncode, done.stdout + done.stderr


def _read_records(result: ExerciseResult, records) -> None:
    """Fill ``result`` from the log: collected tests, their outcomes (first failure wins), checks."""
    for record in records:
        if record["kind"] == "collected":
            result.outcomes.setdefault(record["test"], None)
        elif record["kind"] == "result":
            current = result.outcomes.get(record["test"])
            if current is None or current[0] != "failed":
                result.outcomes[record["test"]] = (record["outcome"], record["message"])
        elif record["kind"] == "check":
            result.checks.append(record)
        elif record["kind"] == "import":
            result.imported_from = record["file"]


def run_exercise(root, grading_dir, name, points, timeout=DEFAULT_TIMEOUT) -> ExerciseResult:
    """Run ``grading_dir/test_<name>.py`` against the minigru package in ``root``, in a pytest process."""
    root, grading_dir = Path(root).resolve(), Path(grading_dir).resolve()
    result = ExerciseResult(name, points)
    command = [sys.executable, "-m", "pytest", str(grading_dir / f"test_{name}.py"), "-q",
               "-p", "no:cacheprovider", "-c", str(grading_dir / "pytest.ini"), "--rootdir", str(grading_dir)]
    with tempfile.TemporaryDirectory(prefix="minigru-grading-") as scratch:
        log = Path(scratch) / "log.jsonl"
        returncode, result.output = _run_pytest(command, root, _grading_env(root, log), timeout)
        _read_records(result, _read_log(log))
    if returncode is None:
        result.error = f"stopped after {timeout:g} s (an endless loop?)"
    elif returncode not in (0, 1):   # 0: all passed, 1: some failed; anything else: pytest itself failed
        tail = "\n".join(result.output.strip().splitlines()[-5:])
        result.error = f"pytest exited with status {returncode}" + (f":\n{tail}" if tail else "")
    unfinished = "did not run to the end" + (f": {result.error}" if result.error else "")
    result.outcomes = {test: outcome or ("failed", unfinished) for test, outcome in result.outcomes.items()}
    if result.error and not result.outcomes:
        result.outcomes["(no test ran)"] = ("failed", result.error)
    return result


def grade(root, exercises=None, grading_dir=None, timeout=DEFAULT_TIMEOUT, all_exercises=False) -> list[ExerciseResult]:
    """Grade the assignment folder ``root``.

    ``exercises`` defaults to the assigned ones (every shipped one with
    ``all_exercises``); ``grading_dir`` to ``root/grading``.
    """
    root = Path(root).resolve()
    grading_dir = Path(grading_dir or root / "grading").resolve()
    assignment = load_assignment(grading_dir)
    known = assignment["exercises"]
    if exercises:
        unknown = [n for n in exercises if n not in known]
        if unknown:
            raise ValueError(f"no grading tests for {', '.join(unknown)}; this assignment has {', '.join(known)}")
        names = [n for n in known if n in exercises]
    else:
        names = [n for n, spec in known.items() if all_exercises or spec["assigned"]]
    return [run_exercise(root, grading_dir, n, known[n]["points"], timeout) for n in names]


def _error_text(value) -> str:
    return "-" if value is None else f"{value:.1e}"


def _status(result: ExerciseResult) -> str:
    if result.error:
        return result.error.splitlines()[0]
    if result.passed == result.total:
        return "ok"
    for outcome, message in result.outcomes.values():
        if message.startswith("Failed: your minigru package does not import"):
            return message.removeprefix("Failed: your ").splitlines()[0]
    missing = result.not_implemented()
    if missing:
        return "not implemented: " + ", ".join(missing)
    return f"{result.total - result.passed} failing"


def format_report(results, root=None, details=True) -> str:
    """The score table, then (with ``details``) every checked tensor and the messages of failed tests."""
    lines = []
    if root is not None:
        where = next((r.imported_from for r in results if r.imported_from), None)
        lines.append(f"Grading {root}" + (f"  (minigru imported from {where})" if where else ""))
        seed = next((r.seed for r in results if r.seed is not None), None)
        if seed is not None:
            lines.append(f"Hidden tests: inputs drawn from seed {seed}, reference numbers from the instructor's "
                         "minigru (grade again with --seed to reproduce)")
        lines.append("")
    header = f"{'exercise':<11} {'tests':>7} {'points':>13}   {'grad check':>10}   {'vs reference':>12}   status"
    lines += [header, "-" * len(header)]
    for r in results:
        errors = _error_text(r.worst("gradcheck")), _error_text(r.worst("reference"))
        lines.append(f"{r.name:<11} {f'{r.passed}/{r.total}':>7} {f'{r.score:.1f} / {r.points:g}':>13}   "
                     f"{errors[0]:>10}   {errors[1]:>12}   {_status(r)}")
    passed, total = sum(r.passed for r in results), sum(r.total for r in results)
    score, points = sum(r.score for r in results), sum(r.points for r in results)
    lines += ["-" * len(header), f"{'total':<11} {f'{passed}/{total}':>7} {f'{score:.1f} / {points:g}':>13}"]
    lines.append("")
    lines.append("grad check: max relative error of your backward pass against finite differences of your forward "
                 "pass (float64, must be <= 1e-06); vs reference: against the instructor's solution (<= 1e-07).")
    if details:
        lines += _detail_lines(results)
    return "\n".join(lines)


def _detail_lines(results) -> list[str]:
    lines = []
    worst = {}   # (exercise, kernel, tensor) -> {method: (worst error, tolerance)}
    for r in results:
        for c in r.checks:
            methods = worst.setdefault((r.name, c["kernel"], c["tensor"]), {})
            if c["method"] not in methods or c["rel_error"] > methods[c["method"]][0]:
                methods[c["method"]] = (c["rel_error"], c["tol"])
    if worst:
        lines += ["", "Every checked tensor (worst relative error over the test cases):",
                  f"  {'exercise':<10} {'kernel':<24} {'tensor':<11} {'grad check':>10}   {'vs reference':>12}"
                  "   result"]
        for (name, kernel, tensor), methods in worst.items():
            ok = all(error <= tol for error, tol in methods.values())
            columns = [_error_text(methods[m][0] if m in methods else None) for m in ("gradcheck", "reference")]
            lines.append(f"  {name:<10} {kernel:<24} {tensor:<11} {columns[0]:>10}   {columns[1]:>12}   "
                         f"{'pass' if ok else 'FAIL'}")
    failures = []
    for r in results:
        seen = {}
        for test, (outcome, message) in r.outcomes.items():
            if outcome == "failed":
                first = message.splitlines()[0].removeprefix("Failed: ") if message else "failed"
                seen.setdefault(first, []).append(test.split("::")[-1])
        for message, tests in seen.items():
            more = f" (and {len(tests) - 1} more)" if len(tests) > 1 else ""
            failures.append(f"  {r.name:<10} {tests[0]}{more}\n      {message}")
    if failures:
        lines += ["", "Failed tests:"] + failures
    return lines


def main(argv=None, default_root=None) -> int:
    parser = argparse.ArgumentParser(prog="grade.py", description="Grade a minigru assignment folder.")
    parser.add_argument("exercises", nargs="*", help="exercises to grade (default: the assigned ones)")
    parser.add_argument("--root", default=default_root, help="the assignment folder (default: this script's folder)")
    parser.add_argument("--all", action="store_true", help="grade every exercise shipped in grading/")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per exercise")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("-q", "--quiet", action="store_true", help="print the score table only")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print pytest's output")
    args = parser.parse_args(argv)
    root = Path(args.root or Path.cwd())
    try:
        results = grade(root, args.exercises or None, timeout=args.timeout, all_exercises=args.all)
    except (FileNotFoundError, ValueError) as err:
        print(f"grade: {err}", file=sys.stderr)
        return 2
    return report(results, root, quiet=args.quiet, verbose=args.verbose, json_path=args.json)


def report(results, root, quiet=False, verbose=False, json_path=None) -> int:
    """Print the results (and write them as JSON); the exit status main returns."""
    if verbose:
        for r in results:
            print(f"===== pytest output of {r.name} =====\n{r.output}")
    print(format_report(results, root, details=not quiet))
    if json_path:
        Path(json_path).write_text(json.dumps([{
            "exercise": r.name, "passed": r.passed, "total": r.total, "score": r.score, "points": r.points,
            "max_rel_error_gradcheck": r.worst("gradcheck"), "max_rel_error_reference": r.worst("reference"),
            "status": _status(r), "seed": r.seed,
            "tests": {t: {"outcome": o, "message": m} for t, (o, m) in r.outcomes.items()},
        } for r in results], indent=2) + "\n", encoding="utf-8")
    return 0 if all(r.passed == r.total and r.total for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(default_root=Path(__file__).resolve().parent))
