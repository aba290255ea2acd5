"""No chapter types a profile-dependent number into its prose: such numbers come from the config.

A number next to a word such as "epochs", "seeds", "replicates", "folds", "minutes" or "test slices"
in a chapter's Markdown must be a ``{glue:text}`` value recorded by the chapter
(:func:`emlib.page_facts`, :func:`emlib.glue_facts`), unless it is a fact of the paper (the sentence
says "paper", "authors" or "Fig.") or of the datasets (:data:`DATASET_FACTS`). Maths, code spans,
code blocks and glue roles are not prose.

Nor does a chapter type a number of the paper's claims (:data:`emlib.paper.PAPER_CLAIMS`: the
Fréchet distances of Fig. 1, the probe's accuracy and AUROC), in its prose or in its code: the code
reads ``PAPER_CLAIMS`` and the prose quotes ``{glue:text}`paper_<claim_id>``` values the chapter
records with ``glue_facts``, so the book cannot drift from :mod:`emlib.paper`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from emlib.book.execute import read_notebook_source
from emlib.paper import PAPER_CLAIMS

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))

_WORDS = "two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|hundred"
#: What depends on the profile (or on the machine): a number in front of one of these is suspect.
_NOUNS = (r"epochs?|seeds?|replicates?|permutations?|folds?|-fold|crops?|tiles?|threads?|seconds?|minutes?|hours?|"
          r"dimensions?|-dimensional|slices?|regions?|steps?")
NUMBER = re.compile(rf"\b(\d[\d,.]*|{_WORDS})(?:[ -](?:[\w+]+[ -]){{0,2}}?)({_NOUNS})\b", re.I)
#: Facts of the datasets, the same on every profile (chapter 1 and the registry say where they come from).
DATASET_FACTS = {
    "165 slices", "165 training slices", "20 labelled slices", "20 unlabelled slices", "20 slices",
    "three test slices", "three VNC test slices", "three VNC slices", "1, 20 labelled slices",
}
_ATTRIBUTED = re.compile(r"\b(paper|authors?|Fig\.)", re.I)
#: The numbers of the paper's claims, with the word that must share the sentence (or code line) for a
#: round value such as 1.0 to count as the claim's (a non-round one, 79.32, counts anywhere).
PAPER_NUMBERS = {
    c.claim_id: (float(c.paper_value), c.what.rsplit(":", 1)[-1].strip() if ":" in c.what else c.claim_id)
    for c in PAPER_CLAIMS if c.paper_value is not None
}
_DECIMAL = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\d])")


def prose(markdown: str) -> str:
    """The Markdown without code blocks, maths, glue roles and code spans."""
    text = re.sub(r"```.*?```", " ", markdown, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"\$[^$\n]*\$", " ", text)
    text = re.sub(r"\{glue(?::\w+)?\}`[^`]*`", " GLUED ", text)
    return re.sub(r"`[^`]*`", " ", text)


def hard_coded_numbers(markdown: str) -> list[str]:
    """Phrases of ``markdown`` with a profile-dependent number typed in (see the module docstring)."""
    text = prose(markdown)
    found = []
    for m in NUMBER.finditer(text):
        phrase = " ".join(m.group(0).split())
        if phrase in DATASET_FACTS or re.search(r"\b(the|a|an|of|per|each)\b", phrase, re.I):
            continue  # "21.8 MB per slice", "at patch 16 the slice": not a count of slices
        start = max(text.rfind(".", 0, m.start()), text.rfind("\n\n", 0, m.start()), 0)
        end = min(i for i in (text.find(". ", m.end()), text.find("\n\n", m.end()), len(text)) if i >= 0)
        if _ATTRIBUTED.search(text[start:end]):
            continue
        found.append(phrase)
    return found


def _sentences(text: str) -> list[str]:
    return [p for p in re.split(r"(?<=[.!?])\s+|\n\s*\n", text) if p.strip()]


def typed_paper_numbers(text: str, *, code: bool = False) -> list[str]:
    """``"<claim_id>: <number>"`` for each number of a paper claim typed into ``text``.

    ``text`` is a chapter's Markdown (glue roles are not typed numbers; code spans and code blocks
    are, since a reader copies them) or, with ``code=True``, its code (read line by line). A round
    claim value (the probe's 1.0) counts only written with a decimal point and next to the claim's
    word (``accuracy``, ``AUROC``), so ``coral_weight=1.0`` or ``y_range=(0, 1)`` pass.
    """
    text = re.sub(r"\{glue(?::\w+)?\}`[^`]*`", " GLUED ", text)
    found = []
    for part in text.splitlines() if code else _sentences(text):
        for m in _DECIMAL.finditer(part):
            seen = set()  # claims sharing a value and a word (the probe's 1.0 frozen and after LoRA) count once
            for claim_id, (value, word) in PAPER_NUMBERS.items():
                if float(m.group(0)) != value or (value, word.lower()) in seen:
                    continue
                if value.is_integer() and ("." not in m.group(0) or word.lower() not in part.lower()):
                    continue
                seen.add((value, word.lower()))
                found.append(f"{claim_id}: {m.group(0)}")
    return found


def recorded_glue_names(code: str) -> tuple[set[str], bool]:
    """The names ``code`` records with ``glue_facts(..., name=value)``, and whether it glues ``page_facts(...)``."""
    names, pages = set(), False
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "glue_facts":
            names |= {kw.arg for kw in node.keywords if kw.arg}
            pages |= any(isinstance(a, ast.Call) and getattr(a.func, "id", None) == "page_facts" for a in node.args)
    return names, pages


def test_the_paper_detector_catches_typed_claim_values() -> None:
    assert typed_paper_numbers("The Fréchet distance is 79.32 frozen and 45.02 after LoRA.") == [
        "fd_frozen: 79.32", "fd_lora: 45.02"]
    assert typed_paper_numbers("The probe reaches accuracy and AUROC of 1.0 (Fig. 1).") == [
        "probe_accuracy: 1.0", "probe_auroc: 1.0"]
    assert typed_paper_numbers("The FD is {glue:text}`paper_fd_frozen`; `coral_weight=1.0` starts. A probe at 1.0.") == []
    assert typed_paper_numbers('side = {"paper": ["79.32", "45.02", "1.0"]}', code=True) == [
        "fd_frozen: 79.32", "fd_lora: 45.02"]
    assert typed_paper_numbers('probe = {"accuracy": 1.0}\nscan = (0.1, 1.0, 10.0)\nrange = (0, 1)', code=True) == [
        "probe_accuracy: 1.0"]
    assert typed_paper_numbers("fd = 179.32 + 45.021", code=True) == []


def test_the_glue_reader_finds_keywords_on_any_line() -> None:
    code = 'facts = glue_facts(page_facts(settings), paper_fd_frozen=paper["fd_frozen"],\n    seeds=3)\nn = glue_facts(n_boot=200)["n_boot"]'
    assert recorded_glue_names(code) == ({"paper_fd_frozen", "seeds", "n_boot"}, True)
    assert recorded_glue_names("glue_facts(folds=5)") == ({"folds"}, False)


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_paper_claim_value_is_typed_into_a_chapter(source: Path) -> None:
    nb = read_notebook_source(source)
    markdown = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    found = [f"prose {n}" for n in typed_paper_numbers(markdown)] + [f"code {n}" for n in typed_paper_numbers(code, code=True)]
    assert not found, (
        f"{source.name} types numbers of the paper's claims: {found}; code reads emlib.PAPER_CLAIMS, prose quotes "
        "{glue:text}`paper_<claim_id>` recorded with glue_facts(paper_<claim_id>=...)"
    )


def test_the_detector_catches_typed_numbers_and_spares_glued_ones() -> None:
    assert hard_coded_numbers("On the smoke profile training lasts two epochs.") == ["two epochs"]
    assert hard_coded_numbers("each test set is two 112-pixel regions, 6 seeds") == ["two 112-pixel regions", "6 seeds"]
    assert hard_coded_numbers("training lasts {glue:text}`epochs` epochs on `200` slices, $n = 20$ slices") == []
    assert hard_coded_numbers("The paper uses 5 seeds. VNC has three test slices.") == []


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_profile_dependent_number_is_typed_into_a_chapter(source: Path) -> None:
    nb = read_notebook_source(source)
    markdown = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    found = hard_coded_numbers(markdown)
    assert not found, (
        f"{source.name} types these numbers into its prose: {found}; take them from the config "
        "(glue_facts(page_facts(settings)) and {glue:text}`name`), or attribute them to the paper"
    )


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_glued_name_is_recorded_by_the_chapter(source: Path) -> None:
    """A ``{glue:text}`name``` needs a ``glue_facts`` call in the chapter (page_facts or a keyword)."""
    nb = read_notebook_source(source)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    names = set(re.findall(r"\{glue(?::\w+)?\}`([\w]+)", markdown))
    if not names:
        return
    from emlib import chapter_settings, page_facts

    recorded, pages = set(), False
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        more, glued_pages = recorded_glue_names(cell.source)
        recorded, pages = recorded | more, pages or glued_pages
    if pages:
        recorded |= set(page_facts(chapter_settings("smoke", device="cpu")))
    assert names <= recorded, f"{source.name} glues {sorted(names - recorded)} but never records them"
