"""Tests of emlib.book.execute: one chapter executed with papermill, failures in one line, post-processing."""

from __future__ import annotations

import io
from pathlib import Path

import nbformat
import pytest
import yaml

from emlib.book.execute import (
    KERNEL_ARGUMENTS,
    CellProgress,
    colab_badge_markdown,
    colab_url,
    execute_chapter,
    postprocess_notebook,
    profile_banner_markdown,
)
from emlib.config import get_profile
from emlib.book.repository import BookSource, resolve_source, write_book_config
from emlib.book.toc import CHAPTER_DIR, BookError, list_chapters
from emlib.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
FORK = BookSource("Fork-Owner/emlib-fork", commit="0123abc")


def test_failing_cell_is_one_line_with_chapter_cell_and_partial_notebook(tmp_path: Path) -> None:
    source = tmp_path / "99_broken.py"
    source.write_text(
        '# %% [markdown]\n# # Broken\n\n# %% tags=["parameters"]\nprofile = "smoke"\n\n'
        '# %%\nx = 1\n\n# %%\nraise ValueError("boom")\n'
    )
    output = tmp_path / "out" / "99_broken.ipynb"
    with pytest.raises(BookError) as info:
        execute_chapter(source, output)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("chapter 99_broken failed at cell 4 of ")
    assert "ValueError: boom" in message and message.endswith(f"partial notebook: {output}")
    assert output.is_file()


def test_badge_and_theme_colab_button_point_at_the_same_notebook(tmp_path: Path) -> None:
    (tmp_path / "_config.yml").write_text((REPO / "_config.yml").read_text())
    config = yaml.safe_load(write_book_config(tmp_path, FORK).read_text())  # what jupyter-book reads in a build
    repo = config["repository"]["url"].removeprefix("https://github.com/")
    theme = f"{config['launch_buttons']['colab_url']}/github/{repo}/blob/{config['repository']['branch']}"
    for name in list_chapters(REPO):
        assert colab_url(name, book_source=FORK) == f"{theme}/{CHAPTER_DIR}/{name}.ipynb"
        assert "/github/Fork-Owner/emlib-fork/" in colab_url(name, book_source=FORK)
    assert colab_url("01_data") == resolve_source(REPO).colab_url("01_data")  # by default: derived from the clone


def test_postprocess_hides_parameters_adds_one_badge_and_drops_plotly_js() -> None:
    nb = nbformat.v4.new_notebook()
    bundle = "/**\n* plotly.js v2.35.2\n*/" + "x" * 100_001
    figure = '<div class="plotly-graph-div"></div><script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.5/MathJax.js"></script>'
    code = nbformat.v4.new_code_cell("fig", outputs=[
        nbformat.v4.new_output("display_data", {"text/html": bundle}),
        nbformat.v4.new_output("display_data", {"text/html": figure, "application/vnd.plotly.v1+json": {
            "data": [], "layout": {"title": {"text": "PCA (random weights)"}}}}),
    ])
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"),
                nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["injected-parameters"]}), code]
    postprocess_notebook(nb, "01_data", book_source=FORK)
    (out,) = nb.cells[3].outputs
    assert "mathjax" not in out["data"]["text/html"] and "application/vnd.plotly.v1+json" not in out["data"]
    assert out["metadata"]["emlib_figure_title"] == "PCA (random weights)"
    postprocess_notebook(nb, "01_data", book_source=FORK)  # twice: still one badge, one remove-cell tag
    assert [c.metadata.get("tags") for c in nb.cells] == [[], ["colab-badge"], ["injected-parameters", "remove-cell"], []]
    assert nb.cells[1].source == colab_badge_markdown("01_data", book_source=FORK)
    assert colab_url("01_data", book_source=FORK) in nb.cells[1].source


def test_smoke_chapters_get_one_banner_with_profile_weights_and_online_link() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("x = 1")]
    postprocess_notebook(nb, "01_data", profile="smoke", book_source=FORK)
    postprocess_notebook(nb, "01_data", profile="smoke", book_source=FORK)
    assert [c.metadata.get("tags") for c in nb.cells] == [[], ["colab-badge"], ["profile-banner"], []]
    banner = nb.cells[2].source
    assert banner == profile_banner_markdown("smoke", online=FORK.online_edition)
    assert "(https://fork-owner.github.io/emlib-fork/)" in banner
    assert resolve_source(REPO).online_edition in profile_banner_markdown("smoke")  # by default: derived
    assert "`smoke`" in banner and "random weights" in banner and get_profile("smoke").summary() in banner
    assert profile_banner_markdown("quick") == ""  # pretrained profiles need no banner


def test_cell_progress_names_chapter_cell_and_time() -> None:
    stream = io.StringIO()
    progress = CellProgress("03_frozen_backbone", 2, stream=stream)
    progress.cell(5, "# a comment\nresults = chapter_runs(settings)")
    seconds = progress.done()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("  03_frozen_backbone: cell 1/2, ") and lines[0].endswith("results = chapter_runs(settings)")
    assert lines[1] == f"  03_frozen_backbone: 1 code cells in {seconds:.1f} s"
    assert "--IPKernelApp.log_level=ERROR" in KERNEL_ARGUMENTS  # no "running over TCP without encryption" lines


def test_a_chapter_built_with_a_seed_trains_runs_of_that_seed(tmp_path: Path, shared_data: Path) -> None:
    """Issue 22: ``-p seed 1`` reaches the runs a chapter trains (its settings table and its run folders agree)."""
    source = tmp_path / "98_seeded.py"
    source.write_text(
        '# %% [markdown]\n# # Seeded\n\n# %% tags=["parameters"]\nprofile = "smoke"\nseed: int | None = None\n'
        'data_dir: str | None = None\n'
        'out_dir = "runs"\n\n# %%\nfrom emlib import chapter_runs, chapter_settings\n'
        'settings = chapter_settings(profile, device="cpu", seed=seed, data_dir=data_dir, out_dir=out_dir)\n'
        'rows = chapter_runs(settings, regimes=["unet"], train_sets=["vnc"])\n'
        'print("SEEDS", sorted(set(rows.seed)), dict(settings.table().values.tolist())["seed"])\n'
    )
    output = tmp_path / "98_seeded.ipynb"
    execute_chapter(source, output, parameters={"seed": 1, "data_dir": str(shared_data), "out_dir": str(tmp_path / "runs")})
    printed = "".join(o.get("text", "") for c in nbformat.read(output, as_version=4).cells for o in c.get("outputs", []))
    assert "SEEDS [1] 1" in printed
    (folder,) = (tmp_path / "runs" / "smoke").glob("vnc-unet-unet-s1-*")
    assert '"seed": 1' in (folder / "config.json").read_text()


@pytest.mark.parametrize(("parameters", "words"), [
    ({"import os; os.makedirs('MARK'); x": 1}, "does not name a parameter"),
    ({"profile": "quick"}, "pass --profile quick instead of -p profile=quick"),
    ({"seed": 1}, "-p seed is not a parameter of the chapters built (99_marked)"),
    ({"out_dir": 3}, "-p out_dir=3 is an integer, but chapter 99_marked declares out_dir as a string"),
])
def test_a_parameter_the_chapter_does_not_declare_never_reaches_the_kernel(tmp_path: Path, monkeypatch, parameters,
                                                                          words) -> None:
    """Issue 23: a ``-p`` key is not pasted as code, ``profile`` is the build's; refused before the kernel starts."""
    import time

    source = tmp_path / "99_marked.py"
    source.write_text('# %% [markdown]\n# # Marked\n\n# %% tags=["parameters"]\nprofile = "smoke"\nout_dir = "runs"\n\n'
                      '# %%\nimport pathlib\npathlib.Path("RAN").mkdir()\n')
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "out" / "99_marked.ipynb"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        execute_chapter(source, output, parameters=parameters, cwd=tmp_path)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert time.perf_counter() - t0 < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["99_marked.py"]  # no MARK, no RAN, no output folder


def test_a_string_value_is_pasted_as_that_string_never_as_code(tmp_path: Path, monkeypatch) -> None:
    """Issue 23: a value with quotes, backslashes and newlines reaches the chapter as the same string; no code runs."""
    hostile = 'x"; import pathlib; pathlib.Path("MARK").mkdir(); y="\\\'\n'
    source = tmp_path / "97_echo.py"
    source.write_text('# %% [markdown]\n# # Echo\n\n# %% tags=["parameters"]\nprofile = "smoke"\nout_dir = "runs"\n\n'
                      '# %%\nprint("ECHO", repr(out_dir))\n')
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "97_echo.ipynb"
    execute_chapter(source, output, parameters={"out_dir": hostile}, cwd=tmp_path)
    printed = "".join(o.get("text", "") for c in nbformat.read(output, as_version=4).cells for o in c.get("outputs", []))
    assert f"ECHO {hostile!r}" in printed and not (tmp_path / "MARK").exists()
