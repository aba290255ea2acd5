"""Tests of emlib.book.myst: the book's MyST as the Markdown Jupyter and Colab render."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emlib.book.execute import read_notebook_source
from emlib.book.myst import (MystContext, MystError, cited_keys, myst_to_markdown, parse_bibliography,
                             references_markdown, term_anchor)

REPO = Path(__file__).resolve().parents[2]
BIB = """
@article{doe2020, author = {Doe, Jane and Roe, Rick}, title = {A Title}, journal = {J}, year = {2020}, doi = {10.1/x}}
@misc{zed2019, author = {Zed, Ann and Bee, Bob and Sea, Cid}, title = {Why?}, year = {2019}, url = {https://z.org}}
@inproceedings{acc2021, author = {Fuster-Barcel{\\'o}, Caterina}, title = {T}, booktitle = {W}, year = {2021}}
"""
GLOSSARY = "https://org.github.io/emlib/book/glossary.html"
#: Raw MyST a Jupyter reader would see: a role or a directive fence.
MYST_SYNTAX = re.compile(r"\{[\w:.-]+\}`|^\s*(?::::|```\{)", re.M)


@pytest.fixture
def context() -> MystContext:
    return MystContext(glue={"epochs": "6", "profile": "'quick'", "iou": "0.81234"},
                       references=parse_bibliography(BIB), glossary_url=GLOSSARY)


def test_glued_values_are_substituted_as_myst_nb_shows_them(context: MystContext) -> None:
    text = "{glue:text}`profile` runs {glue:text}`epochs` epochs, IoU {glue:text}`iou:.2f`, {glue}`missing`"
    assert myst_to_markdown(text, context) == "quick runs 6 epochs, IoU 0.81, `missing`"


def test_citations_become_author_year_text(context: MystContext) -> None:
    text = "As {cite:t}`doe2020` showed {cite:p}`zed2019, acc2021`."
    assert myst_to_markdown(text, context) == "As Doe and Roe (2020) showed (Zed et al. 2019; Fuster-Barceló 2021)."
    with pytest.raises(MystError, match=r"citation 'nope' is not in references.bib; add the entry or fix the key"):
        myst_to_markdown("{cite:p}`nope`", context)


def test_references_list_the_cited_entries_sorted_with_their_links() -> None:
    refs = parse_bibliography(BIB)
    text = references_markdown(cited_keys("{cite:p}`zed2019` {cite:t}`doe2020` {cite:p}`zed2019`"), refs)
    assert text.splitlines() == [
        "## References", "",
        "- Doe, J. and Roe, R. (2020). A Title. *J*. https://doi.org/10.1/x",
        "- Zed, A., Bee, B. and Sea, C. (2019). Why? https://z.org",
    ]
    assert references_markdown([], refs) == ""


def test_terms_link_their_glossary_entry(context: MystContext) -> None:
    text = "a {term}`frozen backbone` and its {term}`patch tokens <patch token>`, {term}`Fréchet distance`"
    assert myst_to_markdown(text, context) == (
        f"a [frozen backbone]({GLOSSARY}#term-frozen-backbone) and its [patch tokens]({GLOSSARY}#term-patch-token), "
        f"[Fréchet distance]({GLOSSARY}#term-frechet-distance)")
    assert term_anchor("Vision Transformer") == "term-vision-transformer"


def test_exercises_become_numbered_headings_and_solutions_collapsed_details(context: MystContext) -> None:
    cells = [":::{exercise}\n:label: ex-a\n\nHow many {glue:text}`epochs`?\n:::",
             ":::{solution} ex-a\n:class: dropdown\n\n```python\nx = {'a': 1}\n```\n\nSix.\n:::",
             ":::{exercise} Harder\n:label: ex-b\n\nWhy?\n:::"]
    first, solution, second = (myst_to_markdown(c, context) for c in cells)
    assert first == "### Exercise 1\n\nHow many 6?"
    assert solution == "<details>\n<summary>Solution</summary>\n\n```python\nx = {'a': 1}\n```\n\nSix.\n\n</details>"
    assert second.startswith("### Exercise 2: Harder\n") and context.exercises == {"ex-a": 1, "ex-b": 2}


def test_admonitions_become_quotes_and_nested_fences_close_in_order(context: MystContext) -> None:
    text = "::::{note}\nOuter {cite:p}`doe2020`.\n\n:::{tip} Inner\nIn.\n:::\n::::\nafter"
    assert myst_to_markdown(text, context) == (
        "> **Note**\n>\n> Outer (Doe and Roe 2020).\n>\n> > **Inner**\n> >\n> > In.\nafter")


def test_code_blocks_are_copied_untouched(context: MystContext) -> None:
    text = "```python\nprint('{glue:text}`epochs`')\n```\n{glue:text}`epochs`"
    assert myst_to_markdown(text, context) == "```python\nprint('{glue:text}`epochs`')\n```\n6"


@pytest.mark.parametrize("source", sorted((REPO / "notebooks").glob("*.py")), ids=lambda p: p.stem)
def test_every_chapter_converts_to_markdown_without_myst(source: Path) -> None:
    refs = parse_bibliography((REPO / "book" / "references.bib").read_text(encoding="utf-8"))
    context = MystContext(references=refs, glossary_url=GLOSSARY)
    nb = read_notebook_source(source)
    markdown = [myst_to_markdown(c.source, context) for c in nb.cells if c.cell_type == "markdown"]
    left = [m.group(0) for text in markdown for m in MYST_SYNTAX.finditer(text)]
    assert not left, f"MyST left after the conversion: {left[:5]}"
    assert context.exercises, "the chapter's exercises were not found"
