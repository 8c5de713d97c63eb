"""The documentation: the MkDocs site builds with --strict, every equation the code cites exists,
every docs page the code names exists, every public name has its place in the API reference, and
the derivations reach the reader as typeset equations with their labels.

The site build needs ``mkdocs``, ``mkdocstrings[python]`` and ``pymdown-extensions`` and is skipped
without them; the KaTeX check also needs Node.js (``node``) and is skipped without it; the other
checks only read files.
"""
import html
import importlib
import importlib.util
import json
import re
import shutil
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
# Where a typeset equation defines one: "\\tag{G7}" inside a $$ ... $$ block of a docs page.
_TAG = re.compile(rf"\\tag\{{({LABEL})\}}")
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
        found += _TAG.findall(line)
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
    assert _TAG.findall(r"dx &= \mathit{dout} \cdot [x > 0] \tag{A1'}\\ y \tag{G13}") == ["A1'", "G13"]
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
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built once for this module with ``mkdocs build --strict``."""
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "pymdownx"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install mkdocs 'mkdocstrings[python]' pymdown-extensions)")
    site_dir = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return site_dir


def test_mkdocs_site_builds_strictly(site):
    for page in ("index.html", "derivations/index.html", "api/index.html", "user_guide/index.html"):
        assert (site / page).is_file(), f"the site has no {page}"
    api_html = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="minigru.functional.gru.gru_step_backward"' in api_html, "mkdocstrings rendered no docstrings"


# ------------------------------------------------------------------ typeset equations
# What pymdownx.arithmatex makes of a $$ ... $$ block, and the anchors in front of a numbered one.
_MATH_BLOCK = re.compile(r'<div class="arithmatex">(.*?)</div>', re.S)
_ANCHORS_THEN_MATH = re.compile(r'((?:<div class="eq-anchor" id="[^"]+"></div>\s*)+)<div class="arithmatex">(.*?)</div>', re.S)
# Signs of an equation written as text: a label at the end of a line, or the operators of the derivations.
_EQUATION_AS_TEXT = re.compile(rf"\(({LABEL})\)\s*$|[⊙ᵀΣ∂√⌊]", re.M)


def _anchor(label: str) -> str:
    return "eq-" + label.replace("'", "-prime")


def _math_blocks(page: str) -> list[str]:
    return [html.unescape(tex) for tex in _MATH_BLOCK.findall(page)]


def test_derivations_write_no_equation_in_a_code_block():
    """Every equation of the derivations is a $$ ... $$ block; none is left as text in a code block."""
    text = (ROOT / DERIVATIONS).read_text(encoding="utf-8")
    code = re.findall(r"^```.*?^```|(?:^(?: {4}|\t).*\n?)+", text, flags=re.M | re.S)
    as_text = [block.strip().splitlines()[0] for block in code if _EQUATION_AS_TEXT.search(block)]
    assert not as_text, f"{DERIVATIONS} still writes these equations in code blocks: {as_text}"
    assert not [line for line in text.splitlines() if _DEFINITION.match(line)]


def test_every_labelled_equation_is_typeset_under_its_anchor(site):
    """The built page holds each label of the derivations once, as \\tag{...} in a math block,
    right behind an anchor eq-LABEL that links can point to; no equation is left in a <pre> block,
    and the page loads the vendored KaTeX that typesets the blocks."""
    labels = _labels_defined(DERIVATIONS)
    assert len(labels) >= 70, f"{DERIVATIONS} defines only {len(labels)} labels"
    page = (site / "derivations" / "index.html").read_text(encoding="utf-8")

    blocks = _math_blocks(page)
    assert len(blocks) >= len(set(labels)) // 2, "the derivations page has (almost) no typeset equations"
    for tex in blocks:
        assert tex.startswith("\\[") and tex.endswith("\\]"), f"not a display-math block: {tex[:60]}"
    tagged = {}
    for anchors, tex in _ANCHORS_THEN_MATH.findall(page):
        ids = re.findall(r'id="([^"]+)"', anchors)
        tags = _TAG.findall(html.unescape(tex))
        assert ids == [_anchor(t) for t in tags], f"anchors {ids} stand before an equation tagged {tags}"
        for t in tags:
            tagged[t] = tagged.get(t, 0) + 1
    missing = [label for label in labels if label not in tagged]
    assert not missing, f"labels with no typeset equation behind their anchor: {missing}"
    assert all(n == 1 for n in tagged.values()), {t: n for t, n in tagged.items() if n > 1}
    untagged_anchors = set(re.findall(r'class="eq-anchor" id="([^"]+)"', page)) - {_anchor(t) for t in tagged}
    assert not untagged_anchors, f"anchors with no tagged equation behind them: {sorted(untagged_anchors)}"

    for pre in re.findall(r"<pre\b.*?</pre>", page, flags=re.S):
        text = html.unescape(re.sub(r"<[^>]+>", "", pre))
        assert not _EQUATION_AS_TEXT.search(text), f"an equation is still shown as code: {text[:80]}"
    for asset in ("vendor/katex/katex.min.js", "vendor/katex/katex.min.css", "js/math.js"):
        assert f'"../{asset}"' in page, f"the derivations page does not load {asset}"
        assert (site / asset).is_file(), f"the site has no {asset}"
    assert list((site / "vendor" / "katex" / "fonts").glob("*.woff2")), "the KaTeX fonts are not in the site"


# Runs docs/js/math.js in Node.js on the page's math elements, with katex.render replaced by the
# vendored KaTeX's renderToString in strict mode (throwOnError): prints the errors and the links.
_KATEX_HARNESS = r"""
const fs = require("fs");
const [katexPath, mathPath, elementsPath] = process.argv.slice(2);
const vendored = require(katexPath);
const elements = JSON.parse(fs.readFileSync(elementsPath, "utf8")).map(([tagName, textContent]) => ({tagName, textContent}));
const errors = [], links = [];
globalThis.katex = {render(tex, element, options) {
  try {
    const out = vendored.renderToString(tex, Object.assign({}, options, {throwOnError: true}));
    for (const m of out.matchAll(/href="#([^"]*)"/g)) links.push(m[1]);
  } catch (e) { errors.push([element.textContent.slice(0, 70), e.message]); }
}};
globalThis.document = {readyState: "complete", querySelectorAll: (sel) => sel === ".arithmatex" ? elements : []};
globalThis.window = {addEventListener() {}};
new Function(fs.readFileSync(mathPath, "utf8"))();
console.log(JSON.stringify({count: elements.length, errors, links}));
"""


def test_every_equation_is_valid_katex_and_its_label_a_link(site, tmp_path):
    """What the browser does, minus the browser: docs/js/math.js hands every math block of the page
    to the vendored KaTeX, which must parse all of them, and each label becomes a link to its anchor."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (needed to run KaTeX outside a browser)")
    page = (site / "derivations" / "index.html").read_text(encoding="utf-8")
    elements = [(m.group(1).upper(), html.unescape(m.group(2)))
                for m in re.finditer(r'<(div|span) class="arithmatex">(.*?)</\1>', page, flags=re.S)]
    (tmp_path / "harness.js").write_text(_KATEX_HARNESS, encoding="utf-8")
    (tmp_path / "elements.json").write_text(json.dumps(elements), encoding="utf-8")
    result = subprocess.run(
        [node, str(tmp_path / "harness.js"), str(site / "vendor" / "katex" / "katex.min.js"),
         str(site / "js" / "math.js"), str(tmp_path / "elements.json")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["count"] == len(elements) > 0
    assert not report["errors"], "KaTeX cannot typeset:\n" + "\n".join(f"  {tex!r}: {err}" for tex, err in report["errors"])
    labels = _labels_defined(DERIVATIONS)
    # (KaTeX writes each link twice: in the visible HTML and in the MathML for screen readers.)
    assert set(report["links"]) == {_anchor(label) for label in labels}, "labels and their links differ"
