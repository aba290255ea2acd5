"""No chapter types a profile-dependent number into its prose: such numbers come from the config.

A number next to a word such as "epochs", "seeds", "replicates", "folds", "minutes" or "test slices"
in a chapter's Markdown must be a ``{glue:text}`` value recorded by the chapter
(:func:`emlib.page_facts`, :func:`emlib.glue_facts`), unless it is a fact of the paper (the sentence
says "paper", "authors" or "Fig.") or of the datasets (:data:`DATASET_FACTS`). Maths, code spans,
code blocks and glue roles are not prose.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emlib.book.execute import read_notebook_source

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
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    names = set(re.findall(r"\{glue(?::\w+)?\}`([\w]+)", markdown))
    if not names:
        return
    from emlib import chapter_settings, page_facts

    recorded = set(page_facts(chapter_settings("smoke", device="cpu"))) if "page_facts(settings)" in code else set()
    recorded |= set(re.findall(r"glue_facts\([^)]*?(\w+)=", code)) | set(re.findall(r"(\w+)=[^,()]*(?:\([^)]*\))?[,)]",
                                                                                 " ".join(re.findall(r"glue_facts\((.*)\)", code))))
    assert names <= recorded, f"{source.name} glues {sorted(names - recorded)} but never records them"
