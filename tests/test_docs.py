"""The documentation: the MkDocs site builds with --strict, every equation the code cites exists,
every docs page the code names exists, and every public name has its place in the API reference.

The site build needs ``mkdocs`` and ``mkdocstrings[python]`` and is skipped without them; the other
checks only read files.
"""
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DERIVATIONS = "docs/derivations.md"
USER_GUIDE = "docs/user_guide.md"

# A label: one or two capital letters, a number, maybe a prime (A1, A1', G17, CG3, RN2).
LABEL = r"(?:[A-Z]{1,2}\d{1,2}'?)"
# Where an equation is *defined*: "(G7)" as the first or the last thing on an indented
# (code-block) line of a docs page, e.g. "    h' = (1 − z) ⊙ n + z ⊙ h     (G7)".
_DEFINITION = re.compile(rf"^ {{4,}}(?:\(({LABEL})\)\s.*|.*\S\s+\(({LABEL})\))\s*$")
# Where the code *cites* one: "eq. G5", "eq. (G1)", "eqs. G3-G7", "eqs. O1-O9 and S1-S7", "(G12)".
_CITATION_LIST = re.compile(rf"\beqs?\.\s*((?:\(?{LABEL}\)?(?:\s*(?:[-–,]|and|to)\s*)?)+)")
_PARENTHESISED = re.compile(rf"\(({LABEL})\)")
_SECTION = re.compile(r"§([A-Z]{1,2})\b")
_DOC_PATH = re.compile(r"\bdocs/[\w./-]+\.md\b")


def _labels_defined(doc: str) -> list[str]:
    found = []
    for line in (ROOT / doc).read_text(encoding="utf-8").splitlines():
        m = _DEFINITION.match(line)
        if m:
            found.append(m.group(1) or m.group(2))
    return found


def _sections_defined(doc: str) -> set[str]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    return set(re.findall(r"^##+ §([A-Z]{1,2})\b", text, flags=re.M))


def _expand(text: str) -> list[str]:
    """The labels of a citation list: 'G3-G7, G9' -> G3, G4, G5, G6, G7, G9 (a range keeps its letters)."""
    labels = []
    for first, last in re.findall(rf"\(?({LABEL})\)?(?:\s*[-–]\s*\(?({LABEL})\)?)?", text):
        if not last:
            labels.append(first)
            continue
        a, b = re.fullmatch(r"([A-Z]+)(\d+)'?", first), re.fullmatch(r"([A-Z]+)(\d+)'?", last)
        if a.group(1) != b.group(1):  # "A3-S1" is not a range; check both ends
            labels += [first, last]
        else:
            labels += [f"{a.group(1)}{k}" for k in range(int(a.group(2)), int(b.group(2)) + 1)]
    return labels


def _citations(text: str) -> list[str]:
    labels = []
    for m in _CITATION_LIST.finditer(text):
        labels += _expand(m.group(1))
    labels += _PARENTHESISED.findall(text)
    return labels


def _source_files():
    return sorted(p for p in (ROOT / "minigru").rglob("*.py") if "__pycache__" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------ equation labels
def test_label_parser_reads_definitions_and_citations():
    # The parsers themselves, on known text: a definition at either end of a code line, ranges
    # expanded, prose mentions not taken for definitions.
    assert _DEFINITION.match("    dx  = dout · [x > 0]          (A1')").group(2) == "A1'"
    assert _DEFINITION.match("    (O1)  g = ∇w + λ·w").group(1) == "O1"
    assert _DEFINITION.match("From (B4), γ multiplies every x̂ᵢ (B8)") is None
    assert _citations("(eqs. G8-G10, G12-G14); see (G1) and eq. A3") == [
        "G8", "G9", "G10", "G12", "G13", "G14", "A3", "G1"]
    assert _citations("docs/user_guide.md eqs. O1-O9 and S1-S3") == [f"O{k}" for k in range(1, 10)] + ["S1", "S2", "S3"]
    assert _citations("an L2 penalty, float32, h0") == []


@pytest.mark.parametrize("doc", [DERIVATIONS, USER_GUIDE])
def test_every_label_is_defined_once(doc):
    labels = _labels_defined(doc)
    assert labels, f"{doc} defines no equation labels (parser out of date?)"
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    assert not duplicates, f"{doc} defines these labels more than once: {duplicates}"


def test_derivations_have_the_labels_the_library_was_written_against():
    labels = set(_labels_defined(DERIVATIONS))
    expected = ({"G1", "G2"} | {f"G{k}" for k in range(3, 19)} | {f"A{k}" for k in (1, 2, 3)}
                | {f"L{k}" for k in range(1, 5)} | {f"D{k}" for k in range(1, 4)} | {f"B{k}" for k in range(1, 13)}
                | {f"S{k}" for k in range(1, 9)} | {f"C{k}" for k in range(1, 11)} | {f"P{k}" for k in range(1, 8)}
                | {f"M{k}" for k in range(1, 10)} | {f"R{k}" for k in range(1, 6)} | {f"T{k}" for k in range(1, 7)})
    assert expected <= labels, f"missing from {DERIVATIONS}: {sorted(expected - labels)}"


def _cited_docs(text: str) -> set[str]:
    return {m.group(0) for m in _DOC_PATH.finditer(text)}


def test_every_equation_the_code_cites_exists():
    """A file's equation labels must be defined in the pages it names: the user guide when it names
    docs/user_guide.md, the derivations when it names docs/derivations.md (or no page at all)."""
    derivations, guide = set(_labels_defined(DERIVATIONS)), set(_labels_defined(USER_GUIDE))
    sections = _sections_defined(DERIVATIONS)
    problems = []
    for path in _source_files():
        text = path.read_text(encoding="utf-8")
        pages = _cited_docs(text)
        allowed = set()
        if USER_GUIDE in pages:
            allowed |= guide
        if DERIVATIONS in pages or USER_GUIDE not in pages:
            allowed |= derivations
        for label in _citations(text):
            if label not in allowed:
                problems.append(f"{_rel(path)}: eq. {label} is not defined in "
                                f"{' or '.join(sorted(pages & {DERIVATIONS, USER_GUIDE})) or DERIVATIONS}")
        for letter in _SECTION.findall(text):
            if letter not in sections:
                problems.append(f"{_rel(path)}: §{letter} is not a section of {DERIVATIONS}")
    assert not problems, "citations without a target:\n  " + "\n  ".join(sorted(set(problems)))


def test_every_docs_page_the_code_names_exists():
    problems = []
    for path in _source_files():
        for page in sorted(_cited_docs(path.read_text(encoding="utf-8"))):
            if not (ROOT / page).is_file():
                problems.append(f"{_rel(path)} names {page}, which does not exist")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ the API reference
PACKAGES = ["minigru.backend", "minigru.gradcheck", "minigru.nn", "minigru.functional", "minigru.models",
            "minigru.optim", "minigru.train", "minigru.data"]


def _public_objects(package_name):
    """(name, object) for the package's public classes and functions."""
    package = importlib.import_module(package_name)
    names = getattr(package, "__all__", None)
    if names is None:  # nn, functional and models re-export their modules' names without an __all__
        names = [n for n in dir(package) if not n.startswith("_")]
    for name in names:
        obj = getattr(package, name)
        if (isinstance(obj, type) or callable(obj)) and getattr(obj, "__module__", "").startswith("minigru"):
            yield name, obj


def test_api_reference_covers_every_public_name():
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: ([\w.]+)\s*$", api, flags=re.M))
    assert documented, "docs/api.md has no ::: directives"
    missing = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for name, obj in _public_objects(package_name):
            covered = obj.__module__ in documented or (
                package_name in documented and name in getattr(package, "__all__", ()))
            if not covered:
                missing.append(f"{package_name}.{name} (defined in {obj.__module__})")
    assert not missing, "add a '::: module' section to docs/api.md for: " + ", ".join(missing)
    for target in sorted(documented):
        importlib.import_module(target)  # a directive for a module that no longer exists


# ------------------------------------------------------------------ the site
def test_mkdocs_site_builds_strictly(tmp_path):
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install mkdocs 'mkdocstrings[python]')")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    for page in ("index.html", "derivations/index.html", "api/index.html", "user_guide/index.html"):
        assert (tmp_path / "site" / page).is_file(), f"the site has no {page}"
    api_html = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="minigru.functional.gru.gru_step_backward"' in api_html, "mkdocstrings rendered no docstrings"
