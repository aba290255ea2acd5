"""Tests of emlib.book.parameters: ``-p`` values checked against each chapter's parameters cell (issue 23, item 9)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from emlib.book.execute import read_notebook_source
from emlib.book.parameters import ChapterParameter, chapter_parameters, check_injection, check_parameters, parameters_for
from emlib.book.toc import list_chapters
from emlib.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "import os; os.makedirs('MARK'); x"  # what `-p "import os; os.makedirs('MARK'); x=1"` makes the key


def _nb(source: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})]
    return nb


def _declared(*names: str) -> dict[str, dict[str, ChapterParameter]]:
    return {name: chapter_parameters(read_notebook_source(REPO / "notebooks" / f"{name}.py")) for name in names}


def test_the_parameters_cell_declares_names_defaults_and_types() -> None:
    declared = chapter_parameters(_nb('profile = "smoke"  # c\nseed: int | None = None\nlr = 0.1\n'
                                      'regimes = ["frozen"]\ndata_dir: Optional[str] = None\nplain = None\n'
                                      'x = compute()\n'))
    assert list(declared) == ["profile", "seed", "lr", "regimes", "data_dir", "plain"]  # a call is no parameter
    assert declared["seed"].types == (int, type(None)) and declared["seed"].accepts(3)
    assert not declared["seed"].accepts(True) and not declared["seed"].accepts("3")
    assert declared["lr"].accepts(1) and declared["lr"].accepts(0.5) and not declared["lr"].accepts(None)
    assert declared["regimes"].accepts(["lora"]) and not declared["regimes"].accepts([1]) and not declared["regimes"].accepts("lora")
    assert declared["data_dir"].accepts("/x") and declared["data_dir"].accepts(None)
    assert declared["plain"].types == (type(None),)
    assert chapter_parameters(nbformat.v4.new_notebook()) == {}


def test_every_chapter_declares_a_type_for_each_parameter() -> None:
    for name, declared in _declared(*list_chapters(REPO)).items():
        untyped = [key for key, param in declared.items() if param.types == (type(None),)]
        assert not untyped, f"{name}: parameters with a None default and no annotation: {untyped}"
        assert declared["seed"].describe() == "an integer or null" and declared["backbone"].accepts("dinov2_vitb14")


@pytest.mark.parametrize(("parameters", "words"), [
    ({HOSTILE: 1}, [f"-p {HOSTILE}=1 does not name a parameter", "nothing runs", "take backbone, data_dir, device"]),
    ({"class": 1}, ["-p class=1 does not name a parameter"]),
    ({"profile": "quick"}, ["-p profile=quick would run the chapters on quick", "follow --profile smoke",
                            "pass --profile quick instead of -p profile=quick"]),
    ({"nope": 1}, ["-p nope is not a parameter of the chapters built (01_data)", "declare backbone, data_dir"]),
    ({"regimes": ["lora"]}, ["-p regimes is not a parameter of the chapters built (01_data)"]),
    ({"seed": "abc"}, ["-p seed='abc' is a string, but chapter 01_data declares seed as an integer or null",
                       "pass an integer or null"]),
    ({"seed": True}, ["-p seed=true is true/false"]),
    ({"data_dir": 2024}, ["-p data_dir=2024 is an integer", "as a string or null", """quote it: -p data_dir='"2024"'"""]),
    ({"device": None}, ["-p device=null is null, but chapter 01_data declares device as a string (default 'auto')"]),
])
def test_a_parameter_the_chapter_does_not_declare_or_of_another_type_is_one_sentence(parameters, words) -> None:
    with pytest.raises(ConfigError) as info:
        check_parameters(parameters, _declared("01_data"))
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_a_parameter_only_some_chapters_declare_goes_to_those_only() -> None:
    declared = _declared("01_data", "08_beyond_the_paper")
    check_parameters({"regimes": ["lora"], "seed": 2, "backbone": None}, declared)
    assert parameters_for({"regimes": ["lora"], "seed": 2}, declared["01_data"]) == {"seed": 2}
    assert parameters_for({"regimes": ["lora"], "seed": 2}, declared["08_beyond_the_paper"]) == {"regimes": ["lora"], "seed": 2}
    with pytest.raises(ConfigError, match="chapter 08_beyond_the_paper declares regimes as a list"):
        check_parameters({"regimes": "lora"}, declared)


def test_an_untyped_none_default_asks_the_author_for_an_annotation() -> None:
    with pytest.raises(ConfigError, match=r"chapter t declares no type for plain .*e\.g\. `plain: str \| None = None`"):
        check_parameters({"plain": "x"}, {"t": chapter_parameters(_nb("plain = None\n"))})
    check_parameters({"plain": None}, {"t": chapter_parameters(_nb("plain = None\n"))})


def test_the_pasted_cell_is_only_the_given_literals() -> None:
    check_injection({"profile": "smoke", "backbone": 'x"; import os; os.makedirs("MARK"); y="', "seed": 3,
                     "data_dir": "a\\\"b\n", "regimes": ["frozen"]}, chapter="01_data")
    with pytest.raises(ConfigError, match="would not be pasted into the notebook as plain values, so nothing runs"):
        check_injection({"lr": float("inf")}, chapter="01_data")
    with pytest.raises(ConfigError, match="would not be pasted"):
        check_injection({HOSTILE: 1}, chapter="01_data")
