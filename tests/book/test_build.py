"""Tests of emlib.book.build: the whole smoke book builds in one call, and the Colab export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emlib.book import BookError, BuildReport, build_book
from emlib.book.build import TIMINGS, write_timings
from emlib.book.execute import colab_url
from emlib.book.toc import CHAPTER_DIR, list_chapters, toc_docnames
from emlib.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_every_toc_page_is_built(smoke_book: BuildReport) -> None:
    docs = toc_docnames(smoke_book.book_root)
    assert (smoke_book.html_dir / "index.html").is_file()
    missing = [d for d in docs if not (smoke_book.html_dir / f"{d}.html").is_file()]
    assert not missing
    assert smoke_book.chapters == list_chapters(REPO) and smoke_book.chapters
    assert set(smoke_book.notebooks) == set(smoke_book.chapters)
    assert [f"execute {c}" for c in smoke_book.chapters] == list(smoke_book.timings)[: len(smoke_book.chapters)]
    assert "jupyter-book build" in smoke_book.timings and "html: " in smoke_book.summary()


def test_chapter_pages_hide_injected_parameters_and_show_badge(smoke_book: BuildReport) -> None:
    for name in smoke_book.chapters:
        html = (smoke_book.html_dir / CHAPTER_DIR / f"{name}.html").read_text()
        assert "# Parameters" not in html, f"{name}: papermill's injected-parameters cell is visible"
        assert colab_url(name, book_source=smoke_book.book_source) in html, f"{name}: no Open in Colab badge"
        assert f'href="{smoke_book.book_source.url}"' in html, f"{name}: the repository button is not the derived one"
        assert "* plotly.js v" not in html, f"{name}: plotly.js pasted into the page"
    assert (smoke_book.html_dir / "_static" / "plotly.min.js").is_file()


def test_unknown_profile_or_chapter_fails_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown profile"):
        build_book(REPO, profile="nope", out=tmp_path)
    with pytest.raises(BookError, match=r"--only names \['99_nope'\]"):
        build_book(REPO, only=["99_nope"], out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_chapter_pages_carry_the_profile_banner_and_no_local_paths(smoke_book: BuildReport, shared_data: Path) -> None:
    for name in smoke_book.chapters:
        html = (smoke_book.html_dir / CHAPTER_DIR / f"{name}.html").read_text()
        online = smoke_book.book_source.online_edition
        assert "emlib-profile-banner" in html and online in html, f"{name}: no smoke-build banner"
        assert str(shared_data) not in html, f"{name}: the builder's data folder is printed on the page"


def test_instructor_guide_shows_this_builds_timings(smoke_book: BuildReport) -> None:
    data = json.loads((smoke_book.book_root / TIMINGS).read_text())
    record = data["latest"]
    assert record["profile"] == "smoke" and list(record["chapters"]) == smoke_book.chapters
    assert record["partial"] is None and list(data["full"].values()) == [record]  # a fresh build of every chapter
    for name in smoke_book.chapters:
        measured = record["chapters"][name]["seconds"]
        assert measured == pytest.approx(smoke_book.timings[f"execute {name}"], abs=0.06)
    html = (smoke_book.html_dir / "book" / "instructors.html").read_text()
    first = record["chapters"][smoke_book.chapters[0]]
    assert first["title"] in html and f"{first['seconds']:.0f}" in html and "not measured yet" in html
    assert "full build of " + record["date"] in html


def test_timings_table_keeps_earlier_chapters_of_the_same_profile(tmp_path: Path) -> None:
    (tmp_path / "book" / "chapters").mkdir(parents=True)
    names = list_chapters(REPO)
    write_timings(tmp_path, REPO, "smoke", {names[0]: 12.34}, partial="--only")
    write_timings(tmp_path, REPO, "smoke", {names[1]: 5.0}, partial="--only")
    data = json.loads((tmp_path / TIMINGS).read_text())
    record = data["latest"]["chapters"]
    assert data["full"] == {}
    assert record[names[0]] == {**record[names[0]], "seconds": 12.3, "earlier": True}
    assert record[names[1]]["seconds"] == 5.0 and not record[names[1]]["earlier"]
    assert record[names[2]]["seconds"] is None
    table = (tmp_path / TIMINGS).with_suffix(".md").read_text()
    assert "12 (earlier build)" in table and "not built yet" in table and "not measured yet" in table
    assert "No full `smoke` build" in table and "(--only)" in table


def test_partial_or_reusing_builds_never_replace_the_last_full_build(tmp_path: Path) -> None:
    (tmp_path / "book" / "chapters").mkdir(parents=True)
    names = list_chapters(REPO)
    write_timings(tmp_path, REPO, "smoke", {n: 100.0 + i for i, n in enumerate(names)})
    full = json.loads((tmp_path / TIMINGS).read_text())["full"]
    write_timings(tmp_path, REPO, "smoke", {n: 1.0 for n in names}, partial="reused runs")
    write_timings(tmp_path, REPO, "smoke", {names[0]: 2.0}, partial="--only")
    data = json.loads((tmp_path / TIMINGS).read_text())
    assert data["full"] == full and data["latest"]["partial"] == "--only"
    (record,) = full.values()
    assert record["chapters"][names[0]]["seconds"] == 100.0 and "date" in record and "cores" in record["machine"]
    table = (tmp_path / TIMINGS).with_suffix(".md").read_text()
    total = sum(100.0 + i for i in range(len(names)))
    assert f"**{total:.0f}**" in table and "No full" not in table and f"full build of {record['date']}" in table
    write_timings(tmp_path, REPO, "quick", {names[0]: 7.0})  # another profile: its own full record, both shown
    data = json.loads((tmp_path / TIMINGS).read_text())
    assert len(data["full"]) == 2 and "`quick` profile" in (tmp_path / TIMINGS).with_suffix(".md").read_text()


def test_a_build_finds_the_runs_it_would_reuse(tmp_path: Path) -> None:
    from emlib.book.build import _found_runs
    from emlib.book.parameters import chapter_parameters
    from emlib.book.toc import SOURCE_DIR
    from emlib.book.execute import read_notebook_source

    name = next(n for n in list_chapters(REPO)
                if "out_dir" in chapter_parameters(read_notebook_source(REPO / SOURCE_DIR / f"{n}.py")))
    declared = {name: chapter_parameters(read_notebook_source(REPO / SOURCE_DIR / f"{name}.py"))}
    runs = tmp_path / "runs"
    assert not _found_runs({name: {"out_dir": str(runs)}}, declared, cwd=tmp_path)
    (runs / "smoke" / "run1").mkdir(parents=True)
    assert not _found_runs({name: {}}, declared, cwd=tmp_path)  # the cell's default folder, no finished run yet
    (runs / "smoke" / "run1" / "metrics.json").write_text("{}")
    assert _found_runs({name: {"out_dir": str(runs)}}, declared, cwd=tmp_path)


def test_no_smoke_run_predicts_one_class_everywhere(smoke_book: BuildReport, smoke_runs: Path) -> None:
    # every run the smoke book trained (the whole grid and chapter 8's remedies): a regime that collapses
    # to one class would show as degenerate here, so the smoke build can tell a broken regime
    from emlib.grid.runner import read_results

    results = read_results(smoke_runs / "smoke")
    assert set(results.regime) == {"frozen", "lora", "unet"} and len(results) >= 18
    assert not results.degenerate.any(), results.loc[results.degenerate, ["run_id", "test_set", "iou_fg"]].to_string()


def test_chapters_that_train_need_their_weights_before_anything_runs(tmp_path: Path, monkeypatch) -> None:
    """Missing weights of the chapter's backbone end a pretrained build in one sentence, before any chapter (issue 12)."""
    import emlib.book.build as build_mod
    from emlib.errors import WeightsError

    asked = []

    def missing(name: str) -> None:
        asked.append((name, build_mod.os.environ.get("EMLIB_WEIGHTS")))
        why = f"no pretrained weights for {name} on this machine"  # as the hub raises it: `why` without the fix
        raise WeightsError(f"{why}; run emlib.fetch_weights(['{name}'])", why=why)

    monkeypatch.setattr(build_mod, "find_weights", missing)
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    with pytest.raises(BookError, match=r"^03_frozen_backbone, 06_latent_diagnostics train with dinov2_vits14, and no "
                       r"pretrained weights for dinov2_vits14 on this machine; run `emlib weights fetch dinov2_vits14`"):
        build_mod.check_chapter_weights(REPO, ["02_what_a_foundation_model_sees", "03_frozen_backbone",
                                               "06_latent_diagnostics"], "quick-dry")
    with pytest.raises(BookError, match="train with dinov2_vitl14_reg"):  # the paper's backbone: DINOv2 with registers
        build_mod.check_chapter_weights(REPO, ["07_results_vs_paper"], "paper", {"weights_dir": str(tmp_path)})
    assert asked[-1] == ("dinov2_vitl14_reg", str(tmp_path)) and "EMLIB_WEIGHTS" not in build_mod.os.environ
    with pytest.raises(BookError, match="train with openclip_vitb16"):  # -p backbone=... is the chapters' backbone
        build_mod.check_chapter_weights(REPO, ["04_lora"], "quick", {"backbone": "openclip_vitb16"})
    n = len(asked)
    build_mod.check_chapter_weights(REPO, ["01_data", "02_what_a_foundation_model_sees"], "quick")  # no chapter trains
    build_mod.check_chapter_weights(REPO, ["03_frozen_backbone"], "smoke")  # random weights need no file
    assert len(asked) == n
    with pytest.raises(BookError, match="train with"):  # build_book checks first: no chapter is executed
        build_book(REPO, profile="quick", dry_run=True, only=["05_paired_training"], out=tmp_path / "b", progress=False)
    assert not (tmp_path / "b" / CHAPTER_DIR / "05_paired_training.ipynb").exists()


HOSTILE = {"import os; os.makedirs('MARK'); x": 1}  # `-p "import os; os.makedirs('MARK'); x=1"`


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_chapter_runs(monkeypatch: pytest.MonkeyPatch, *, passes: tuple[str, ...] = ()) -> list:
    """Record every chapter build_book would execute, and stop the build at the first not in ``passes``."""
    import emlib.book.build as build_mod

    ran: list = []

    def execute(source, output, **kwargs):
        ran.append((Path(source).stem, kwargs["parameters"]))
        if Path(source).stem not in passes:
            raise BookError("stopped by the test before the kernel starts")
        return output

    monkeypatch.setattr(build_mod, "execute_chapter", execute)
    return ran


@pytest.mark.parametrize(("parameters", "words"), [
    (HOSTILE, "does not name a parameter"),
    ({"profile": "quick"}, "pass --profile quick instead of -p profile=quick"),
    ({"seed": "abc"}, "-p seed='abc' is a string, but chapter 01_data declares seed as an integer or null"),
    ({"regimes": ["lora"]}, "-p regimes is not a parameter of the chapters built (01_data)"),
])
def test_parameters_are_checked_before_anything_is_written_or_run(tmp_path: Path, monkeypatch, parameters,
                                                                  words) -> None:
    """Issue 23, item 9: a ``-p`` key is never pasted as code, and nothing is written before the refusal."""
    import time

    ran = _no_chapter_runs(monkeypatch)
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        build_book(REPO, only=["01_data"], out=tmp_path / "out", parameters=parameters, progress=False)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert time.perf_counter() - t0 < 10 and not ran and not any(tmp_path.iterdir())  # no MARK, no out


def test_out_holding_the_users_files_or_inside_the_sources_is_refused_with_nothing_overwritten(
        tmp_path: Path, monkeypatch) -> None:
    """Issue 23, item 9: ``--out`` must be new, empty or emlib's own, and never the repository or its book sources."""
    from emlib.book.build import check_out

    ran = _no_chapter_runs(monkeypatch)
    users = tmp_path / "mine"
    (users / "book").mkdir(parents=True)
    (users / "_config.yml").write_text("title: my own book\n")
    (users / "book" / "intro.md").write_text("# my intro\n")
    before, repo_book = _files(users), sorted(p.name for p in (REPO / "book").iterdir())
    cases = [(users, f"--out {users} already holds files emlib did not make (_config.yml, book)"),
             (REPO / "book", f"--out {REPO / 'book'} lies in the book's sources ({REPO / 'book'})"),
             (REPO / "book" / "new", "lies in the book's sources"),
             (REPO / "notebooks" / "x", f"lies in the book's sources ({REPO / 'notebooks'})"),
             (REPO, f"--out {REPO} is the repository {REPO}"),
             (REPO.parent, f"--out {REPO.parent} holds the repository"),
             (users / "_config.yml", "is a file, not a folder")]
    for out, words in cases:
        with pytest.raises(BookError) as info:
            build_book(REPO, only=["01_data"], out=out, progress=False)
        assert words in str(info.value) and "pass a " in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert _files(users) == before and not ran
    assert sorted(p.name for p in (REPO / "book").iterdir()) == repo_book  # nothing copied into the sources
    assert not (REPO / "notebooks" / "x").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_out(REPO, empty) == empty.resolve() and check_out(REPO, tmp_path / "new") == (tmp_path / "new").resolve()


def test_a_build_with_out_writes_only_there_its_runs_too(tmp_path: Path, monkeypatch) -> None:
    """Issue 23, item 9: ``--out X --only 03_frozen_backbone`` sends the chapter's runs to ``X/runs``, and a second
    build may write into the folder the first one made (its marker)."""
    from emlib.book.build import OUT_MARKER

    ran = _no_chapter_runs(monkeypatch, passes=("01_data", "03_frozen_backbone"))
    repo_runs = sorted((REPO / "runs").iterdir()) if (REPO / "runs").is_dir() else []
    out = tmp_path / "out"
    with pytest.raises(BookError, match="stopped by the test"):
        build_book(REPO, only=["03_frozen_backbone", "04_lora"], out=out, progress=False)
    assert ran == [("03_frozen_backbone", {"out_dir": str(out / "runs")}), ("04_lora", {"out_dir": str(out / "runs")})]
    assert (out / OUT_MARKER).is_file() and (out / "_config.yml").is_file()
    with pytest.raises(BookError, match="stopped by the test"):  # emlib's own folder: built into again
        build_book(REPO, only=["03_frozen_backbone", "08_beyond_the_paper"], out=out, progress=False,
                   parameters={"out_dir": "mine", "regimes": ["lora"]})
    assert ran[-2:] == [("03_frozen_backbone", {"out_dir": str(out / "mine")}),  # regimes: only chapter 8 declares it
                        ("08_beyond_the_paper", {"out_dir": str(out / "mine"), "regimes": ["lora"]})]
    with pytest.raises(BookError, match="stopped by the test"):  # an absolute out_dir is the user's explicit choice
        build_book(REPO, only=["01_data", "04_lora"], out=out, progress=False,
                   parameters={"out_dir": str(tmp_path / "runs")})
    assert ran[-2] == ("01_data", {"out_dir": str(tmp_path / "runs")})
    assert not (REPO / "runs").exists() or sorted((REPO / "runs").iterdir()) == repo_runs


def test_the_smoke_book_trains_every_run_of_book_runs(smoke_book: BuildReport, smoke_runs: Path, shared_data: Path,
                                                       monkeypatch) -> None:
    """Issue 21, item 3: the one list of the book's runs (emlib.chapters.runs.CHAPTER_RUNS), which a sharded build
    trains, names runs the chapters train. (This build also runs the exercise solutions, some of which train runs
    of their own, so it holds more; that a merged build trains nothing the shards did not is tests/book/test_shards.py's.)"""
    from emlib.book.shards import book_runs

    monkeypatch.setenv("EMLIB_DATA", str(shared_data))
    book = book_runs(REPO, profile="smoke", parameters={"out_dir": str(smoke_runs)}, check_weights=False)
    trained = {p.parent.name for p in (smoke_runs / "smoke").glob("*/metrics.json")}
    listed = set(book.folders())
    assert len(listed) == len(book.configs) == 34 and listed <= trained, sorted(listed - trained)
