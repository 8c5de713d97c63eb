"""Solution markers: find, check and strip nbgrader-style regions in .py files and notebook cells.

A marked region looks like this (the hint lines are optional)::

    ### HINT: r = sigmoid(xr + hr) (eq. G3). Name the results r, z, n, h_next.
    ### BEGIN SOLUTION
    ...reference code...
    ### END SOLUTION

In a student copy the lines from ``BEGIN`` to ``END`` become one statement at
the marker's indentation, and the hint lines above it stay::

    raise NotImplementedError('Exercise gru (gru_step_forward): r = sigmoid(xr + hr) ...')

Markers are comments, so the library with markers runs exactly as without them.
Rules, each checked with an error naming the file and line (:class:`MarkerError`):

* markers are written exactly ``### BEGIN SOLUTION`` / ``### END SOLUTION`` alone
  on their line (a comment that mentions either phrase in another form is an error,
  because nbgrader would take it for a marker);
* regions do not nest, every BEGIN has its END at the same indentation, and no
  line inside a region is indented less than its markers;
* ``### HINT:`` lines sit directly above a BEGIN, at its indentation.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MarkerError", "Region", "find_regions", "strip_source", "replacement_line",
           "undeclared_names", "read_notebook", "notebook_regions", "strip_notebook", "write_notebook"]

_MARKER = re.compile(r"^(?P<indent>[ \t]*)### (?P<word>BEGIN SOLUTION|END SOLUTION)[ \t]*$")
_HINT = re.compile(r"^(?P<indent>[ \t]*)### HINT:(?P<text>.*)$")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MarkerError(ValueError):
    """A malformed solution region; ``str()`` reads ``file:line: problem``."""

    def __init__(self, where: str, line: int, problem: str):
        super().__init__(f"{where}:{line}: {problem}")
        self.where, self.line, self.problem = where, line, problem


@dataclass(frozen=True)
class Region:
    """One ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region.

    ``begin``/``end`` are the 1-based lines of the two markers (within the cell,
    for a notebook), ``hints`` the texts of the ``### HINT:`` lines above it,
    ``function`` the name of the innermost enclosing ``def`` (``Class.method``
    for methods; None at module level or when the code does not parse).
    """
    where: str
    begin: int
    end: int
    indent: str
    hints: tuple = ()
    hint_begin: int | None = None
    function: str | None = None
    cell: int | None = None

    @property
    def location(self) -> str:
        """``file:line`` of the BEGIN marker (``file cell N, line L`` in a notebook)."""
        if self.cell is None:
            return f"{self.where}:{self.begin}"
        return f"{self.where} cell {self.cell}, line {self.begin}"


def _classify(line: str):
    """('begin'|'end'|'hint'|None, indent, hint text) for one line; MarkerError text for a near-miss."""
    found = _MARKER.match(line)
    if found:
        return ("begin" if found["word"].startswith("BEGIN") else "end"), found["indent"], None
    found = _HINT.match(line)
    if found:
        return "hint", found["indent"], found["text"].strip()
    stripped = line.strip()
    if stripped.startswith("#") and ("BEGIN SOLUTION" in stripped or "END SOLUTION" in stripped):
        word = "BEGIN SOLUTION" if "BEGIN SOLUTION" in stripped else "END SOLUTION"
        return "malformed", "", f"malformed marker {stripped!r}: write exactly '### {word}' alone on the line"
    return None, "", None


def _physical_lines(text: str) -> list[str]:
    """The lines of ``text`` with their endings, split after each "\\n" only, as Python numbers them
    (``str.splitlines`` would also split at form feeds and other separators)."""
    pieces = text.split("\n")
    return [piece + "\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def find_regions(text: str, where: str = "<source>", cell: int | None = None) -> list[Region]:
    """Every marked region of ``text`` (Python source), in order; MarkerError if the markers are malformed."""
    lines = [line.rstrip("\r\n") for line in _physical_lines(text)]
    regions = []
    hints: list[tuple[int, str, str]] = []   # (line, indent, text) of the hint lines just read
    opened = None                            # (line, indent, hints) of the BEGIN awaiting its END
    body = 0                                 # non-blank lines inside the open region
    for number, line in enumerate(lines, 1):
        kind, indent, text_or_problem = _classify(line)
        if kind == "malformed":
            raise MarkerError(where, number, text_or_problem)
        if opened is not None:
            begin, begin_indent, region_hints = opened
            if kind == "begin":
                raise MarkerError(where, number, f"BEGIN SOLUTION inside the region opened at line {begin} "
                                  "(regions cannot nest; close it with ### END SOLUTION first)")
            if kind == "hint":
                raise MarkerError(where, number, f"### HINT: inside the solution region opened at line {begin} "
                                  "would be removed from the student copy; put hints directly above ### BEGIN SOLUTION")
            if kind == "end":
                if indent != begin_indent:
                    raise MarkerError(where, number, f"END SOLUTION is indented {len(indent)} columns but the "
                                      f"BEGIN SOLUTION at line {begin} is indented {len(begin_indent)} "
                                      "(mismatched indentation)")
                if body == 0:
                    raise MarkerError(where, begin, "empty solution region (no code between BEGIN and END SOLUTION)")
                regions.append(Region(where, begin, number, begin_indent, tuple(t for _, _, t in region_hints),
                                      region_hints[0][0] if region_hints else None, cell=cell))
                opened = None
            elif line.strip():
                body += 1
                if not line.startswith(begin_indent):
                    raise MarkerError(where, number, f"this line is indented less than the BEGIN SOLUTION at line "
                                      f"{begin}: a region must sit inside one block (mismatched indentation)")
            continue
        if kind == "end":
            raise MarkerError(where, number, "END SOLUTION without a BEGIN SOLUTION before it")
        if kind == "hint":
            hints.append((number, indent, text_or_problem))
            continue
        if hints and kind != "begin":
            raise MarkerError(where, hints[0][0], "### HINT: is not directly above a ### BEGIN SOLUTION (hints "
                              "describe the region below them; write a plain comment otherwise)")
        if kind == "begin":
            for hint_line, hint_indent, _ in hints:
                if hint_indent != indent:
                    raise MarkerError(where, hint_line, f"### HINT: is indented {len(hint_indent)} columns but the "
                                      f"BEGIN SOLUTION below it (line {number}) is indented {len(indent)}")
            opened, body, hints = (number, indent, hints), 0, []
    if opened is not None:
        raise MarkerError(where, opened[0], "BEGIN SOLUTION has no matching ### END SOLUTION (unclosed region)")
    if hints:
        raise MarkerError(where, hints[0][0], "### HINT: is not directly above a ### BEGIN SOLUTION")
    return _with_functions(text, regions)


def _function_spans(tree) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every def in ``tree``."""
    spans = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    spans.append((child.lineno, child.end_lineno, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return spans


def _parse(text: str):
    try:
        return ast.parse(text)
    except SyntaxError:  # e.g. a notebook cell with IPython magics
        return None


def _with_functions(text: str, regions: list[Region]) -> list[Region]:
    """The regions with ``function`` set to the innermost def around each."""
    tree = _parse(text) if regions else None
    if tree is None:
        return regions
    spans = _function_spans(tree)
    named = []
    for region in regions:
        around = [s for s in spans if s[0] <= region.begin <= s[1]]
        function = max(around)[2] if around else None   # the innermost starts last
        named.append(Region(region.where, region.begin, region.end, region.indent, region.hints,
                            region.hint_begin, function, region.cell))
    return named


def replacement_line(region: Region, exercise: str) -> str:
    """The statement that replaces ``region`` in a student copy (without the newline)."""
    label = f"Exercise {exercise}" + (f" ({region.function})" if region.function else "")
    hint = region.hints[0] if region.hints and region.hints[0] else "write the code that was removed here"
    return f"{region.indent}raise NotImplementedError({label + ': ' + hint!r})"


def strip_source(text: str, where: str, exercise_of, check_syntax: bool = True, cell: int | None = None):
    """Replace the regions that ``exercise_of(region)`` names an exercise for; keep the others.

    Returns ``(new_text, stripped)`` where ``stripped`` lists ``(region, exercise,
    line)`` with the line of the ``raise`` in the new text. With ``check_syntax``
    the result must compile (a MarkerError otherwise).
    """
    lines = _physical_lines(text)
    out, stripped, shift, cursor = [], [], 0, 0
    for region in find_regions(text, where, cell):
        exercise = exercise_of(region)
        if exercise is None:
            continue
        out.extend(lines[cursor:region.begin - 1])
        begin_line = lines[region.begin - 1]
        newline = begin_line[len(begin_line.rstrip("\r\n")):] or "\n"
        out.append(replacement_line(region, exercise) + newline)
        stripped.append((region, exercise, region.begin - shift))
        shift += region.end - region.begin
        cursor = region.end
    out.extend(lines[cursor:])
    new_text = "".join(out)
    if check_syntax and stripped:
        try:
            compile(new_text, where, "exec")
        except SyntaxError as err:
            raise MarkerError(where, err.lineno or 0, f"the student copy would not compile: {err.msg}") from err
    return new_text, stripped


def undeclared_names(text: str, region: Region) -> list[str]:
    """Names the region assigns that later code of its function reads, but that no hint names.

    A region is self-contained when this is empty: a student who writes the
    region from the hints alone defines everything the code after it needs.
    """
    tree = _parse(text)
    if tree is None:
        return []
    spans = [s for s in _function_spans(tree) if s[0] <= region.begin <= s[1]]
    last = max(spans)[1] if spans else len(_physical_lines(text))
    stored, read_after = set(), set()
    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if line is None:
            continue
        if isinstance(node, ast.Name):
            if region.begin < line < region.end and isinstance(node.ctx, ast.Store):
                stored.add(node.id)
            elif region.end < line <= last and isinstance(node.ctx, ast.Load):
                read_after.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if region.begin < line < region.end:
                stored.add(node.name)
    named = set(_IDENTIFIER.findall(" ".join(region.hints)))
    return sorted((stored & read_after) - named)


# ------------------------------------------------------------------ notebooks
def read_notebook(path) -> dict:
    """A notebook as the JSON dict of the .ipynb file (no nbformat needed)."""
    path = Path(path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise MarkerError(str(path), err.lineno, f"not a valid notebook (JSON error: {err.msg})") from err
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise MarkerError(str(path), 1, "not a notebook: no 'cells' list")
    return nb


def _cell_text(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def notebook_regions(nb: dict, where: str) -> list[Region]:
    """Every marked region of the notebook's code cells (``Region.cell`` is the cell's index)."""
    found = []
    for index, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") == "code":
            found.extend(find_regions(_cell_text(cell), where, cell=index))
    return found


def strip_notebook(nb: dict, where: str, exercise: str, clear_outputs: bool = True):
    """A copy of ``nb`` with every region of its code cells stripped for ``exercise``.

    With ``clear_outputs`` every code cell loses its outputs and execution count
    (outputs of the solution would give answers away). Returns ``(new_nb, stripped)``
    like :func:`strip_source`.
    """
    new = json.loads(json.dumps(nb))
    stripped = []
    for index, cell in enumerate(new["cells"]):
        if cell.get("cell_type") != "code":
            continue
        text, done = strip_source(_cell_text(cell), where, lambda region: exercise, check_syntax=False, cell=index)
        if done:
            stripped.extend(done)
            cell["source"] = _physical_lines(text)
        if clear_outputs:
            cell["outputs"] = []
            cell["execution_count"] = None
    return new, stripped


def write_notebook(nb: dict, path) -> None:
    """Write ``nb`` as nbformat does (one-space indent, sorted keys, trailing newline)."""
    Path(path).write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
