"""The book's MyST turned into the Markdown that Jupyter and Colab render (pure functions, no files).

The chapters write MyST: ``{glue:text}`name``` for a number of the build, ``{cite:p}`key``` and
``{cite:t}`key``` for a citation, ``{term}`word``` for a glossary entry, and ``:::{exercise}`` /
``:::{solution}`` fences. Jupyter shows all of that as raw syntax, so :func:`myst_to_markdown`
rewrites one Markdown cell:

* a glued value becomes its text (as MyST-NB shows it; an unknown one the name in code font);
* a citation becomes plain text, ``(Author Year)`` or ``Author (Year)``;
* a term becomes a link to its entry on the glossary page of the online book;
* an exercise becomes a heading (``### Exercise N``), a solution a collapsed
  ``<details><summary>Solution</summary>`` block, an admonition a quote with its title in bold.

:func:`parse_bibliography` reads the entries of ``references.bib`` (given as text) and
:func:`references_markdown` writes the references cell that ends an exported chapter.

Examples
--------
>>> refs = parse_bibliography("@misc{a2020, author = {Doe, Jane}, title = {T}, year = {2020}}")
>>> context = MystContext(glue={"epochs": "6"}, references=refs, glossary_url="https://x.io/book/glossary.html")
>>> myst_to_markdown("{glue:text}`epochs` epochs {cite:p}`a2020`, a {term}`backbone`", context)
'6 epochs (Doe 2020), a [backbone](https://x.io/book/glossary.html#term-backbone)'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "ROLE",
    "DIRECTIVE",
    "MystError",
    "Reference",
    "MystContext",
    "parse_bibliography",
    "term_anchor",
    "cited_keys",
    "myst_to_markdown",
    "references_markdown",
]

#: A MyST role: ``{name}`text```.
ROLE = re.compile(r"\{(?P<name>[A-Za-z][\w:.-]*)\}`(?P<text>[^`]*)`")
#: The opening line of a MyST directive: ``:::{name} argument`` or ```` ```{name} argument ````.
DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>:{3,}|`{3,})\{(?P<name>[A-Za-z][\w:.-]*)\}[ \t]*(?P<arg>.*)$")
_FENCE = re.compile(r"^[ \t]*(?P<fence>:{3,}|`{3,})[ \t]*(?P<info>.*)$")
_OPTION = re.compile(r"^[ \t]*:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")
_ADMONITIONS = ("note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error", "seealso")


class MystError(ValueError):
    """MyST the export cannot turn into Markdown (the message names the fix)."""


@dataclass(frozen=True)
class Reference:
    """One entry of ``references.bib``, as the export cites and lists it.

    Attributes
    ----------
    key : str
    authors : tuple of str
        Last names, in order (the citation's text).
    year : str
    text : str
        The full reference, one Markdown line (the references cell).
    """

    key: str
    authors: tuple[str, ...]
    year: str
    text: str

    @property
    def names(self) -> str:
        """``Doe``, ``Doe and Roe`` or ``Doe et al.``."""
        if len(self.authors) > 2:
            return f"{self.authors[0]} et al."
        return " and ".join(self.authors) or self.key


@dataclass
class MystContext:
    """What a chapter's MyST refers to.

    Attributes
    ----------
    glue : mapping of str to str
        Each glued name with its ``text/plain`` value (from the executed chapter).
    references : mapping of str to Reference
        The bibliography (:func:`parse_bibliography`).
    glossary_url : str
        The glossary page of the online book.
    exercises : dict of str to int
        Exercise numbers by label, filled while the cells of one chapter are converted in order.
    """

    glue: Mapping[str, str] = field(default_factory=dict)
    references: Mapping[str, Reference] = field(default_factory=dict)
    glossary_url: str = "glossary.html"
    exercises: dict[str, int] = field(default_factory=dict)


def _plain(latex: str) -> str:
    """LaTeX of a bib field as plain text (accents to unicode, braces dropped)."""
    from pybtex.richtext import Text  # lazy: pybtex comes with the [book] extra (sphinxcontrib-bibtex)

    return str(Text.from_latex(latex)).strip()


def parse_bibliography(text: str) -> dict[str, Reference]:
    """The entries of a BibTeX file's text, by key.

    Examples
    --------
    >>> refs = parse_bibliography("@article{k, author = {Lucchi, Aur{\\\\'e}lien and Smith, Kevin and Fua, Pascal},"
    ...                           " title = {Seg}, journal = {TMI}, year = {2012}, doi = {10.1/x}}")
    >>> refs["k"].names, refs["k"].year
    ('Lucchi et al.', '2012')
    >>> refs["k"].text
    'Lucchi, A., Smith, K. and Fua, P. (2012). Seg. *TMI*. https://doi.org/10.1/x'
    """
    from pybtex.database import parse_string

    refs = {}
    for key, entry in parse_string(text, "bibtex").entries.items():
        people = entry.persons.get("author", [])
        last = tuple(_plain(" ".join(p.prelast_names + p.last_names)) for p in people)
        full = [f"{name}, {''.join(_plain(f) [:1] + '.' for f in p.first_names)}".rstrip(", ")
                for name, p in zip(last, people)]
        fields = entry.fields
        year = fields.get("year", "n.d.")
        venue = next((fields[k] for k in ("journal", "booktitle", "publisher", "howpublished") if k in fields), "")
        link = f"https://doi.org/{fields['doi']}" if "doi" in fields else fields.get("url", "")
        authors = (", ".join(full[:-1]) + " and " + full[-1]) if len(full) > 1 else "".join(full)
        title = _plain(fields.get("title", key))
        parts = [f"{authors} ({year}).", title if title.endswith((".", "?", "!")) else f"{title}."]
        parts += [f"*{_plain(venue)}*."] if venue else []
        parts += [link] if link else []
        refs[key] = Reference(key=key, authors=last, year=year, text=" ".join(parts))
    return refs


def term_anchor(term: str) -> str:
    """The anchor Sphinx gives a glossary entry (``term-`` and the term as a docutils id).

    Examples
    --------
    >>> term_anchor("Fréchet distance"), term_anchor("LoRA")
    ('term-frechet-distance', 'term-lora')
    """
    ascii_text = unicodedata.normalize("NFKD", term).encode("ascii", "ignore").decode()
    return "term-" + re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _split_target(text: str) -> tuple[str, str]:
    """``shown <target>`` of a role as (shown, target); plain ``text`` as (text, text)."""
    match = re.fullmatch(r"\s*(.*?)\s*<([^>]+)>\s*", text, flags=re.S)
    return (match.group(1), match.group(2).strip()) if match else (text.strip(), text.strip())


def _keys(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def cited_keys(markdown: str) -> list[str]:
    """The bibliography keys cited in ``markdown``, in order of first citation.

    Examples
    --------
    >>> cited_keys("{cite:p}`b, a` then {cite:t}`a` and {cite}`c`")
    ['b', 'a', 'c']
    """
    keys = [k for m in ROLE.finditer(markdown) if m["name"].split(":")[0] == "cite" for k in _keys(m["text"])]
    return list(dict.fromkeys(keys))


def _glue(text: str, context: MystContext) -> str:
    name, _, spec = text.strip().partition(":")
    if name not in context.glue:
        return f"`{name}`"  # an unexecuted export: the value comes when the chapter runs
    value = context.glue[name].strip().strip("'")  # MyST-NB shows a glued str without its quotes
    if spec:
        try:
            return format(float(value), spec)
        except ValueError:
            return value
    return value


def _cite(kind: str, text: str, context: MystContext) -> str:
    refs = []
    for key in _keys(text):
        if key not in context.references:
            raise MystError(f"citation {key!r} is not in references.bib; add the entry or fix the key")
        refs.append(context.references[key])
    if kind in ("t", "author"):
        return "; ".join(f"{r.names} ({r.year})" for r in refs)
    return "(" + "; ".join(f"{r.names} {r.year}" for r in refs) + ")"


def _role(match: re.Match[str], context: MystContext) -> str:
    name, text = match["name"], match["text"]
    family, _, kind = name.partition(":")
    if family == "glue":
        return _glue(text, context)
    if family == "cite":
        return _cite(kind or "p", text, context)
    if name == "term":
        shown, target = _split_target(text)
        return f"[{shown}]({context.glossary_url}#{term_anchor(target)})"
    if name == "math":
        return f"${text}$"
    return _split_target(text)[0]  # ref, numref, doc, abbr, ...: the words they show


def _inline(text: str, context: MystContext) -> str:
    return ROLE.sub(lambda m: _role(m, context), text)


def _closing(lines: list[str], start: int, fence: str) -> int:
    """Index of the line closing the fence opened before ``start`` (fences of the same length nest)."""
    depth = 0
    for i in range(start, len(lines)):
        match = _FENCE.match(lines[i])
        if not match or match["fence"] != fence:
            continue
        if match["info"].strip():
            depth += 1
        elif depth:
            depth -= 1
        else:
            return i
    return len(lines)  # unclosed: MyST runs it to the end of the cell


def _quote(title: str, body: str) -> str:
    lines = [f"**{title}**", "", *body.splitlines()]
    return "\n".join(f"> {line}".rstrip() for line in lines)


def _details(summary: str, body: str, *, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}>\n<summary>{summary}</summary>\n\n{body}\n\n</details>"


def _render(name: str, arg: str, options: dict[str, str], body: str, context: MystContext) -> str:
    """One directive as Markdown (``body`` already converted)."""
    if name == "exercise":
        number = len(context.exercises) + 1
        context.exercises[options.get("label", f"exercise-{number}")] = number
        return f"### Exercise {number}" + (f": {arg}" if arg else "") + f"\n\n{body}"
    if name == "solution":
        return _details("Solution", body)
    if name in ("dropdown", "toggle"):
        return _details(arg or "Show", body, open_="open" in options or "show" in options)
    if name in _ADMONITIONS or name == "admonition":
        title = arg or ("See also" if name == "seealso" else name.capitalize())
        if "dropdown" in options.get("class", "").split():
            return _details(title, body)
        return _quote(title, body)
    if name == "math":
        return f"$$\n{body}\n$$"
    if name in ("code", "code-block", "code-cell", "sourcecode"):
        return f"```{arg}\n{body}\n```"
    return (f"**{arg}**\n\n" if arg else "") + body  # figure, margin, ...: the content, its title in bold


def myst_to_markdown(markdown: str, context: MystContext | None = None) -> str:
    """One Markdown cell of MyST as Markdown that Jupyter renders (see the module's description).

    Parameters
    ----------
    markdown : str
        The cell's source.
    context : MystContext, default=None
        Glued values, bibliography and glossary address; convert a chapter's cells in order with one
        context so its exercises are numbered.

    Returns
    -------
    str

    Raises
    ------
    MystError
        A citation key that is not in the bibliography.

    Examples
    --------
    >>> print(myst_to_markdown(":::{solution} ex-a\\n:class: dropdown\\n\\nTry {math}`x^2`.\\n:::"))
    <details>
    <summary>Solution</summary>
    <BLANKLINE>
    Try $x^2$.
    <BLANKLINE>
    </details>
    """
    context = context or MystContext()
    lines, out, i = markdown.splitlines(), [], 0
    while i < len(lines):
        match = DIRECTIVE.match(lines[i])
        if not match:
            code = _FENCE.match(lines[i])
            if code and code["fence"].startswith("`"):  # a plain code block: copied as it is
                end = _closing(lines, i + 1, code["fence"])
                out.extend(lines[i:end + 1])
                i = end + 1
                continue
            out.append(_inline(lines[i], context))
            i += 1
            continue
        end = _closing(lines, i + 1, match["fence"])
        body, options = lines[i + 1:end], {}
        while body and _OPTION.match(body[0]):
            option = _OPTION.match(body[0])
            options[option["key"]] = option["value"].strip()
            body = body[1:]
        inner = myst_to_markdown("\n".join(body).strip("\n"), context)
        rendered = _render(match["name"], _inline(match["arg"].strip(), context), options, inner, context)
        out.extend(match["indent"] + line if line else line for line in rendered.splitlines())
        i = end + 1
    return "\n".join(out)


def references_markdown(keys: list[str], references: Mapping[str, Reference]) -> str:
    """The references cell of a chapter: each cited entry, sorted by author and year ("" when none).

    Examples
    --------
    >>> refs = parse_bibliography("@misc{a, author = {Doe, Jane}, title = {T}, year = {2020}}")
    >>> print(references_markdown(["a"], refs))
    ## References
    <BLANKLINE>
    - Doe, J. (2020). T.
    """
    cited = sorted((references[k] for k in dict.fromkeys(keys) if k in references),
                   key=lambda r: (r.names.lower(), r.year, r.key))
    if not cited:
        return ""
    return "## References\n\n" + "\n".join(f"- {r.text}" for r in cited)
