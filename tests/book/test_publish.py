"""Tests of emlib.book.publish: the Colab notebooks, pinned; the workflow that publishes them; a Colab session played.

The last test plays Colab as far as this machine allows: it exports a chapter pinned to a snapshot
of this working tree (a local clone), makes a fresh virtual environment (the dependencies are seen
through a ``.pth`` file, emlib is not), fakes ``google.colab``, and runs the exported notebook: its
first cell must install emlib at exactly that commit and print the GPU line, and the chapter must
run on the local hub, offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from emlib.book import main
from emlib.book.execute import read_notebook_source
from emlib.book.publish import (COLAB_TAG, GLUE_PREFIX, INSTALL_LINE, PROFILE_LINE, SETUP_CALL, export_notebooks,
                                pin_notebook)
from emlib.book.repository import FALLBACK_REPOSITORY, BookSource
from emlib.book.toc import SOURCE_DIR, BookError, list_chapters
from emlib.config import BUILD_ENV
from emlib.testing import LocalHub

REPO = Path(__file__).resolve().parents[2]
SHA = "0123456789abcdef0123456789abcdef01234567"
ORG = BookSource("Org/emlib", commit=SHA)
WORKFLOW = REPO / ".github" / "workflows" / "book.yml"
DEFAULT_BRANCH_ONLY = "github.ref == format('refs/heads/{0}', github.event.repository.default_branch)"
#: The chapter played on Colab: its pictures depend on pretrained weights (one backbone per family).
COLAB_CHAPTER = "02_what_a_foundation_model_sees"


def _code(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_export_pins_every_chapter_to_the_repository_and_commit(tmp_path: Path) -> None:
    written = export_notebooks(tmp_path, REPO, book_source=ORG)
    assert [p.stem for p in written] == list_chapters(REPO)
    for path in written:
        nb = nbformat.read(path, as_version=4)
        first, params = _code(nb)[:2]
        assert f'EMLIB = "emlib-vfm @ git+https://github.com/Org/emlib@{SHA}"' in first.source, path.stem
        assert FALLBACK_REPOSITORY not in path.read_text(), f"{path.stem}: the placeholder survived the export"
        assert SETUP_CALL.search(first.source).group(2) == "quick" and PROFILE_LINE.search(params.source).group(2) == "quick"
        recorded = {"repository": "Org/emlib", "commit": SHA, "profile": "quick", "requirement": ORG.requirement}
        assert recorded.items() <= nb.metadata["emlib"].items()
        assert COLAB_TAG in first.metadata["tags"] and "parameters" in params.metadata["tags"]
        assert ("families=True" in first.source) == (path.stem == COLAB_CHAPTER), path.stem
        assert nb.metadata["accelerator"] == "GPU" and nb.metadata["kernelspec"]["name"] == "python3"
        assert not any(c.get("outputs") for c in _code(nb))
    source = read_notebook_source(REPO / SOURCE_DIR / f"{written[0].stem}.py")
    assert not any(SETUP_CALL.search(c.source) for c in _code(source))  # the source carries no Colab cell


#: What Jupyter would show as raw MyST: a role (``{name}`...```) or a directive fence (``:::`` or ```` ```{ ````).
MYST_SYNTAX = re.compile(r"\{[\w:.-]+\}`|^\s*(?::::|```\{)", re.M)


def test_exported_notebooks_hold_no_myst_and_end_with_their_references(tmp_path: Path) -> None:
    written = export_notebooks(tmp_path, REPO, book_source=ORG)
    for path in written:
        nb = nbformat.read(path, as_version=4)
        markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
        left = [m.group(0) for text in markdown for m in MYST_SYNTAX.finditer(text)]
        assert not left, f"{path.stem}: MyST left in the export: {left[:5]}"
        text = "\n".join(markdown)
        assert "### Exercise 1" in text and "<details>\n<summary>Solution</summary>" in text, path.stem
        assert "<details open" not in text
    chapter = nbformat.read(written[0], as_version=4)
    assert chapter.cells[-1].source.startswith("## References")
    assert "Fuster-Barceló, C. and Uhlmann, V. (2026)." in chapter.cells[-1].source
    text = "\n".join(c.source for c in chapter.cells if c.cell_type == "markdown")
    assert "(Fuster-Barceló and Uhlmann 2026)" in text
    lora = nbformat.read(next(p for p in written if p.stem == "04_lora"), as_version=4)
    assert "[LoRA](https://org.github.io/emlib/book/glossary.html#term-lora)" in "\n".join(c.source for c in lora.cells)


def test_nbconvert_shows_the_solutions_of_an_exported_notebook_collapsed(tmp_path: Path) -> None:
    nbconvert = pytest.importorskip("nbconvert")
    [path] = export_notebooks(tmp_path, REPO, book_source=ORG, only=["01_data"])
    html, _ = nbconvert.HTMLExporter().from_filename(str(path))
    assert html.count("<details>") >= 3 and "<summary>Solution</summary>" in html
    assert not re.search(r"<details[^>]*\bopen\b", html), "solutions must start collapsed"
    assert "{cite:" not in html and ":::{" not in html


def test_export_of_executed_chapters_keeps_their_outputs_and_pins_them(tmp_path: Path) -> None:
    """What the workflow publishes (`--executed book/chapters`): the build's outputs, the install pinned, the
    profile of papermill's injected cell set too and
    its folders dropped (the reader's defaults apply); a chapter not built yet stops the export in one sentence."""
    name = list_chapters(REPO)[0]
    built = tmp_path / "built"
    built.mkdir()
    nb = read_notebook_source(REPO / SOURCE_DIR / f"{name}.py")
    code = _code(nb)
    injected = nbformat.v4.new_code_cell('profile = "smoke"\nout_dir = "/tmp/the-builder/runs"\nseed = 3\n', metadata={"tags": ["injected-parameters", "remove-cell"]})
    nb.cells.insert(nb.cells.index(code[0]) + 1, injected)  # papermill puts it after the parameters cell
    code[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="a result of the build\n")]
    glued = nbformat.v4.new_output("display_data", data={f"{GLUE_PREFIX}text/plain": "'forty-two'"},
                                   metadata={"scrapbook": {"name": "answer", "mime_prefix": GLUE_PREFIX}})
    code[-1].outputs.append(glued)
    nb.cells.append(nbformat.v4.new_markdown_cell("The build glued {glue:text}`answer`; unknown: {glue:text}`nope`."))
    nbformat.write(nb, built / f"{name}.ipynb")

    with pytest.raises(BookError, match="no executed notebook .* build the book first"):
        export_notebooks(tmp_path / "none", REPO, book_source=ORG, executed=built)  # only one chapter is there
    assert not (tmp_path / "none").exists()

    [path] = export_notebooks(tmp_path / "colab", REPO, book_source=ORG, only=[name], executed=built)
    out = nbformat.read(path, as_version=4)
    cells = _code(out)
    assert f"@{SHA}" in cells[0].source and "a result of the build" in str(cells[-1].outputs)
    assert [PROFILE_LINE.search(c.source).group(2) for c in cells[1:3]] == ["quick", "quick"]
    assert "the-builder" not in cells[2].source and "seed = 3" in cells[2].source, "the builder's folders are dropped"
    assert COLAB_TAG in cells[0].metadata["tags"] and len([c for c in cells if COLAB_TAG in c.metadata.get("tags", [])]) == 1
    glue_cell = next(c for c in out.cells if c.source.startswith("The build glued"))
    assert glue_cell.source == "The build glued forty-two; unknown: `nope`."


def test_a_chapter_without_a_parameters_cell_stops_the_export_before_anything_is_written(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell('import emlib'),
                nbformat.v4.new_code_cell('profile = "smoke"')]  # not tagged: papermill would not set it
    with pytest.raises(BookError, match=r'chapter 99_x has no parameters cell with a profile = "PROFILE" line'):
        pin_notebook(nb, ORG, name="99_x")
    nb.cells[2].metadata["tags"] = ["parameters"]
    pin_notebook(pin_notebook(nb, ORG, name="99_x"), ORG, profile="paper", name="99_x")  # pinned twice: one Colab cell
    assert [COLAB_TAG in c.metadata.get("tags", []) for c in nb.cells] == [False, False, True, False]
    assert 'colab_setup("paper")' in nb.cells[2].source and nb.cells[3].source == 'profile = "paper"'
    with pytest.raises(BookError, match=r"--only names \['99_nope'\]"):
        export_notebooks(tmp_path, REPO, book_source=ORG, only=["99_nope"])
    assert not any(tmp_path.iterdir())


def test_export_command_takes_repository_commit_and_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["export", str(tmp_path), "--root", str(REPO), "--only", "01_data", "--repository", "https://github.com/Org/emlib.git",
            "--commit", SHA, "--profile", "paper"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"1 notebooks install emlib-vfm @ git+https://github.com/Org/emlib@{SHA} and start with profile 'paper'" in out
    nb = nbformat.read(tmp_path / "book" / "chapters" / "01_data.ipynb", as_version=4)
    assert 'colab_setup("paper")' in _code(nb)[0].source and 'profile = "paper"' in _code(nb)[1].source
    assert main(["export", str(tmp_path), "--root", str(REPO), "--repository", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emlib.book: error: repository 'nope' is not OWNER/NAME") and err.count("\n") == 1


# =============================================================================================
# The workflow
# =============================================================================================


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_workflow_tests_first_then_builds_then_publishes_from_the_default_branch_only(workflow: dict) -> None:
    jobs = workflow["jobs"]
    assert set(jobs) == {"test", "shard", "build", "deploy", "publish-notebooks"}
    assert jobs["shard"]["needs"] == "test" and jobs["build"]["needs"] == "shard" and jobs["deploy"]["needs"] == "build"
    assert set(jobs["publish-notebooks"]["needs"]) == {"build", "deploy"}
    for name in ("deploy", "publish-notebooks"):
        assert jobs[name]["if"] == DEFAULT_BRANCH_ONLY, f"{name} must run from the default branch only"
    assert not {"if"} & (set(jobs["test"]) | set(jobs["shard"]) | set(jobs["build"]))  # every branch and PR is built
    assert "<!-- test-command -->" in _runs(jobs["test"])  # the README's test command, read as .ci/run reads it
    triggers = workflow[True]  # YAML reads a bare `on` as True
    assert {"push", "pull_request", "workflow_dispatch"} <= set(triggers)
    assert "concurrency" in workflow and "github.ref" in workflow["concurrency"]["group"]


def test_workflow_trains_the_shards_as_a_matrix_then_merges_checks_and_exports(workflow: dict) -> None:
    """Issue 21, item 3: N shard jobs upload their runs folders; one job merges them, checks the pages and exports."""
    shard, build = workflow["jobs"]["shard"], workflow["jobs"]["build"]
    n = int(shard["env"]["SHARDS"])
    assert shard["strategy"]["matrix"]["shard"] == list(range(1, n + 1)) and shard["strategy"]["fail-fast"] is False
    assert 'python -m emlib.book build --profile quick --shard "${{ matrix.shard }}/$SHARDS"' in _runs(shard)
    upload = next(s for s in shard["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["with"]["name"] == "runs-shard-${{ matrix.shard }}" and upload["with"]["path"] == "runs"
    download = next(s for s in build["steps"] if str(s.get("uses", "")).startswith("actions/download-artifact"))
    assert download["with"] == {"pattern": "runs-shard-*", "path": "shards"}
    merge = " ".join(_runs(build).split())
    assert "python -m emlib.book build --profile quick --merge shards/runs-shard-* --check" in merge
    assert "--shard" not in _runs(build) and "--merge" not in _runs(shard)


def test_workflow_derives_the_repository_and_pins_the_commit(workflow: dict) -> None:
    build = _runs(workflow["jobs"]["build"])
    for command in ("python -m emlib.book build --profile quick", "python -m emlib.book export _build/colab"):
        line = next(line for line in build.replace("\n--", " --").splitlines() if command in line)
        assert '--repository "${{ github.repository }}"' in line and '--commit "${{ github.sha }}"' in line
    publish = workflow["jobs"]["publish-notebooks"]["steps"][-1]["with"]
    assert publish["publish_branch"] == "notebooks" and "github.sha" in publish["commit_message"]


def test_workflow_permissions_are_per_job_and_minimal(workflow: dict) -> None:
    jobs = workflow["jobs"]
    assert workflow["permissions"] == {}
    assert jobs["test"]["permissions"] == jobs["shard"]["permissions"] == jobs["build"]["permissions"] == {"contents": "read"}
    assert jobs["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    assert jobs["publish-notebooks"]["permissions"] == {"contents": "write"}


def test_workflow_installs_cpu_wheels_without_a_gpu_and_caches_downloads_and_runs(workflow: dict) -> None:
    assert workflow["env"]["TORCH_CPU_INDEX"] == "https://download.pytorch.org/whl/cpu"
    for name in ("test", "shard", "build"):
        runs = _runs(workflow["jobs"][name])
        assert "nvidia-smi" in runs and '--index-url "$TORCH_CPU_INDEX"' in runs, f"{name}: no CPU wheels"
    for name in ("shard", "build"):  # weights and data: restored from the cache, fetched where missing
        steps = workflow["jobs"][name]["steps"]
        caches = [s["with"]["path"].strip() for s in steps if str(s.get("uses", "")).startswith("actions/cache/")]
        assert any("huggingface" in p and "torch" in p and "emlib" in p for p in caches), name
        assert "emlib weights fetch --profile quick" in _runs(workflow["jobs"][name])
    steps = workflow["jobs"]["shard"]["steps"]
    caches = {s["with"]["path"].strip(): s for s in steps if str(s.get("uses", "")).startswith("actions/cache/save")}
    restore = next(s for s in steps if s.get("id") == "runs")
    assert restore["with"]["restore-keys"] == "${{ env.RUNS_KEY }}-"  # a shard's partial runs carry over
    assert "matrix.shard" in next(s["run"] for s in steps if "RUNS_KEY=" in s.get("run", ""))  # each shard its own
    assert caches["runs"]["if"] == "always()"  # saved after a failure or a timeout too
    shard_step = next(s for s in steps if "emlib.book build" in s.get("run", ""))
    assert shard_step["timeout-minutes"] < workflow["jobs"]["shard"]["timeout-minutes"]  # time left to save the runs
    assert all("hashFiles" not in str(job.get("env", {})) for job in workflow["jobs"].values())  # steps only


# =============================================================================================
# Colab, played in a fresh virtual environment
# =============================================================================================


def _snapshot(dest: Path) -> str:
    """This working tree (tracked and untracked, not ignored) committed into a new clone at ``dest``; its commit."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git clone, nothing to snapshot")
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run([*git, *args], cwd=dest, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=dest, capture_output=True, text=True).stdout.strip()


def _fresh_venv(dest: Path) -> Path:
    """A new virtual environment whose packages are this one's, minus emlib (seen through a ``.pth`` file)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest / "venv")], check=True)
    deps = dest / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():  # pip, torch, ...: no download
        if not entry.name.lower().startswith(("emlib", "__editable__", "__pycache__")) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    python = dest / "venv" / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "_this_projects_dependencies.pth").write_text(f"{deps}\n")
    return python


#: Run by the fresh environment's Python: a cell that plays Colab, the exported notebook, a cell that reports.
_PLAY = '''
import json, sys
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

nb = nbformat.read(sys.argv[1], as_version=4)
nb.cells.insert(0, nbformat.v4.new_code_cell(
    "import sys, types\\nsys.modules['google.colab'] = types.ModuleType('google.colab')  # the test plays Colab"))
nb.cells.append(nbformat.v4.new_code_cell(
    "import importlib.metadata, json, emlib\\n"
    "print('REPORT ' + json.dumps({'file': emlib.__file__, 'python': sys.executable, 'device': settings.device,"
    " 'direct_url': json.loads(importlib.metadata.distribution('emlib-vfm').read_text('direct_url.json'))}))"))
client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": sys.argv[3]}})
try:
    client.execute()
finally:
    nbformat.write(nb, sys.argv[2])
'''


def _outputs(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", []))


def test_colab_first_cell_installs_the_pinned_commit_then_the_chapter_runs_on_the_local_hub(
    tmp_path: Path, shared_data: Path, local_hub: LocalHub
) -> None:
    t0 = time.perf_counter()
    clone = tmp_path / "clone"
    sha = _snapshot(clone)
    exported = export_notebooks(tmp_path / "colab", REPO, book_source=BookSource("Org/emlib", commit=sha,
                                install_url=f"file://localhost{clone}"), profile="quick-dry", only=[COLAB_CHAPTER])
    python = _fresh_venv(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, **local_hub.env, "EMLIB_DATA": str(shared_data), "PIP_NO_INDEX": "1",
           "PIP_NO_BUILD_ISOLATION": "0",  # build emlib with this environment's setuptools: no download
           "JUPYTER_DATA_DIR": str(tmp_path / "jupyter"), "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    env.pop(BUILD_ENV, None)  # a live session, as on Colab
    assert subprocess.run([str(python), "-c", "import emlib"], env=env, cwd=work, capture_output=True).returncode != 0
    played = tmp_path / "played.ipynb"
    proc = subprocess.run([str(python), "-c", _PLAY, str(exported[0]), str(played), str(work)], env=env,
                          cwd=work, capture_output=True, text=True, timeout=1500)
    seconds = time.perf_counter() - t0
    nb = nbformat.read(played, as_version=4)
    errors = [f"{o['ename']}: {o['evalue']}" for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert proc.returncode == 0 and not errors, f"{errors or proc.stderr[-3000:]}"
    first = _code(nb)[1]  # after the test's Colab cell
    assert INSTALL_LINE.search(first.source).group(2) == f"emlib-vfm @ git+file://localhost{clone}@{sha}"
    printed = _outputs(first)
    assert "GPU: none; on Colab choose Runtime > Change runtime type > GPU" in printed
    for name in ("dinov2_vits14", "dinov3_vits16", "openclip_vitb16"):  # one backbone per family, from the hub
        assert f"weights: {name} from " in printed and "not fetched" not in printed
    assert "data: lucchi_pp in " in printed and "data: vnc in " in printed
    report = json.loads(_outputs(nb.cells[-1]).split("REPORT ", 1)[1])
    assert report["direct_url"]["vcs_info"]["commit_id"] == sha  # installed at exactly the pinned commit
    assert report["direct_url"]["url"] == f"file://localhost{clone}"
    assert report["file"].startswith(str(tmp_path / "venv")) and report["python"].startswith(str(tmp_path / "venv"))
    assert report["device"] == "cpu"
    print(f"Colab played in a fresh venv (install + {COLAB_CHAPTER} on quick-dry): {seconds:.0f} s")
