"""Published results (emlib.grid.published): a results folder exported from finished runs, checked, read, compared.

The runs are a few tiny ones (seconds); the paper dry run's folder, and a chapter reading it, are
in tests/book/test_published.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from emlib.cli import main
from emlib.device import describe_device
from emlib.errors import ConfigError, DataError, WeightsError
from emlib.grid import published as published_mod
from emlib.grid.published import (RESULTS_MANIFEST, PublishedResults, export_results, provenance_note, published_rows,
                                  read_published)
from emlib.grid.runner import git_commit, run_configs, run_folder
from emlib.runfiles import file_sha256


@pytest.fixture(scope="module")
def grid(tiny, tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict:
    """A grid folder of two tiny finished runs (random-weights frozen, U-Net), a latent table, an unfinished run."""
    out = tmp_path_factory.mktemp("grid") / "unit"
    configs = [tiny(train_set="vnc", crop=56, eval_window=56), tiny(regime="unet", train_set="vnc", crop=32, eval_window=32)]
    rows = run_configs(configs, out, table="results", json_table=True, root=shared_data, progress=False, profile="unit")
    (out / "latents").mkdir()
    pd.DataFrame({"adapter": ["frozen"], "backbone": ["dinov2_vits14"], "fd": [1.5]}).to_csv(out / "latents" / "domain_report.csv", index=False)
    unfinished = out / "vnc-lora-dinov2_vits14-s0-00000000-00000000"
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")
    (unfinished / "checkpoint.safetensors").write_bytes(b"\0" * 16)
    return {"out": out, "configs": configs, "rows": rows, "data": shared_data}


@pytest.fixture(scope="module")
def folder(grid: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The results folder exported from :func:`grid` (read-only: tests that change one copy it)."""
    dest = tmp_path_factory.mktemp("published") / "published"
    export_results([grid["out"]], dest, machine="unit-test machine")
    return dest


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def test_export_keeps_tables_and_provenance_never_weights(grid: dict, folder: Path) -> None:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files and all(name.endswith((".json", ".csv")) for name in files)
    assert list(grid["out"].glob("*/model.safetensors")) and not list(folder.rglob("*.safetensors"))
    runs = sorted(run_folder(c, grid["out"], root=grid["data"]).name for c in grid["configs"])
    for run in runs:
        assert {p.name for p in (folder / "unit" / run).iterdir()} == {"config.json", "metrics.json", "results.csv",
                                                                     "history.csv"}
    assert (folder / "unit" / "latents" / "domain_report.csv").is_file() and (folder / "unit" / "results.csv").is_file()
    assert not (folder / "unit" / "vnc-lora-dinov2_vits14-s0-00000000-00000000").exists()  # unfinished: left out
    manifest = json.loads((folder / RESULTS_MANIFEST).read_text())
    assert sorted(e["path"] for e in manifest["files"]) == [f for f in files if f != RESULTS_MANIFEST]
    assert all(e["sha256"] == file_sha256(folder / e["path"]) for e in manifest["files"])
    record = manifest["profiles"]["unit"]
    assert record["runs"] == runs and record["commits"] == [git_commit()]
    assert record["machines"] == [describe_device("cpu")] and manifest["machine"] == "unit-test machine"
    assert record["weights_labels"] == {"dinov2_vits14": "random weights", "unet": "trained from scratch"}
    assert record["weights_fingerprints"] == {"dinov2_vits14": "random", "unet": "none"}
    assert record["data_fingerprints"] == sorted(set(grid["rows"].data_fingerprint))
    assert record["left_out"] >= 3  # two models, a checkpoint (the unfinished run's too)
    assert read_published(folder).profiles == ("unit",)


def test_export_refuses_before_writing(grid: dict, folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is not a new or empty folder; pass a new folder"):
        export_results([grid["out"]], folder)
    with pytest.raises(ConfigError, match=r"is not a folder of grid runs; pass the folder `emlib grid --out` wrote"):
        export_results([tmp_path / "nope"], tmp_path / "a")
    with pytest.raises(ConfigError, match=r"both hold 'unit' runs; export one folder per profile"):
        export_results([grid["out"], grid["out"]], tmp_path / "b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no finished runs in"):
        export_results([tmp_path / "empty"], tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")


def _plant_weights(copy: Path) -> str:
    (next((copy / "unit").glob("vnc-frozen-*")) / "model.safetensors").write_bytes(b"\0" * 8)
    return "a weights or pickle file, and a results folder holds no weights"


def _change_a_table(copy: Path) -> str:
    path = copy / "unit" / "results.csv"
    path.write_text(path.read_text().replace("vnc", "lucchi_pp", 1))
    return "changed after export (its SHA-256 is not the manifest's); copy it again"


def _add_a_file(copy: Path) -> str:
    (copy / "unit" / "extra.json").write_text("{}")
    return "holds unit/extra.json, which its manifest does not list"


def _drop_a_file(copy: Path) -> str:
    (copy / "unit" / "latents" / "domain_report.csv").unlink()
    return "lacks unit/latents/domain_report.csv, which its manifest lists"


def _break_the_manifest(copy: Path) -> str:
    (copy / RESULTS_MANIFEST).write_text("{not json")
    return "that cannot be read"


def _other_format(copy: Path) -> str:
    manifest = json.loads((copy / RESULTS_MANIFEST).read_text())
    (copy / RESULTS_MANIFEST).write_text(json.dumps({**manifest, "format": "emlib-results/0"}))
    return "is a 'emlib-results/0' folder, not emlib-results/1"


def _no_manifest(copy: Path) -> str:
    (copy / RESULTS_MANIFEST).unlink()
    return f"holds no {RESULTS_MANIFEST}"


def _a_pickle_listed(copy: Path) -> str:
    manifest = json.loads((copy / RESULTS_MANIFEST).read_text())
    manifest["files"].append({"path": "unit/rows.pkl", "size": 1, "sha256": "0"})
    (copy / RESULTS_MANIFEST).write_text(json.dumps(manifest))
    return "lists 'unit/rows.pkl', which is not a table or record inside it"


def _claim_this_commit(copy: Path) -> str:
    manifest = json.loads((copy / RESULTS_MANIFEST).read_text())
    manifest["profiles"]["unit"]["commits"] = ["fedcba9"]  # the page would name a commit no run was made at
    (copy / RESULTS_MANIFEST).write_text(json.dumps(manifest))
    return "has a manifest whose commits of unit are not those its runs' rows record (it was edited after export)"


def _claim_other_weights(copy: Path) -> str:
    manifest = json.loads((copy / RESULTS_MANIFEST).read_text())
    manifest["profiles"]["unit"]["weights_labels"]["dinov2_vits14"] = "pretrained (lvd142m)"
    (copy / RESULTS_MANIFEST).write_text(json.dumps(manifest))
    return "whose weights labels of unit are not those its runs' rows record"


@pytest.mark.parametrize("damage", [_plant_weights, _change_a_table, _add_a_file, _drop_a_file, _break_the_manifest,
                                    _other_format, _no_manifest, _a_pickle_listed, _claim_this_commit,
                                    _claim_other_weights])
def test_a_bad_results_folder_is_one_sentence_naming_the_fix(damage, folder: Path, tmp_path: Path) -> None:
    copy = _copy(folder, tmp_path)
    expected = damage(copy)
    with pytest.raises(DataError) as err:
        read_published(copy)
    message = str(err.value)
    assert expected in message and "\n" not in message and message.count("; ") >= 1, message
    assert message.startswith(f"the results folder {copy.resolve()}")


def test_a_file_is_not_a_results_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match=r"is not a folder; pass the folder `emlib results export RUNS --into DIR` wrote"):
        read_published(tmp_path / "f")


def test_published_rows_are_found_by_run_id_and_config(grid: dict, folder: Path) -> None:
    results = read_published(folder)
    frozen, unet = grid["configs"]
    other = frozen.replace(seed=7)
    found, missing = published_rows(results, [unet, other, frozen.replace(device="cuda")], "unit")
    assert missing == [1] and sorted(found) == [0, 2]  # the device is not a run's identity
    mine = grid["rows"]
    for i, cfg in ((0, unet), (2, frozen)):
        expected = mine[mine.run_id.str.startswith(cfg.run_id)].reset_index(drop=True)
        assert found[i].iou_fg.tolist() == expected.iou_fg.tolist() and set(found[i].run_id) == set(expected.run_id)
    with pytest.raises(ConfigError, match=r"holds runs of the unit profile\(s\), not 'quick'; build with the profile it holds"):
        published_rows(results, [frozen], "quick")


def test_provenance_note_says_what_made_the_numbers_and_every_mismatch(grid: dict, folder: Path, tiny_root) -> None:
    results = read_published(folder)
    note = provenance_note(results, "unit", commit=git_commit(), root=grid["data"])
    assert note.matches and note.problems == [] and note.remarks == []  # random and U-Net weights: nothing to compare
    page = note._repr_html_()
    assert 'class="admonition note emlib-published"' in page and "emlib-published-mismatch" not in page
    for shown in (git_commit(), describe_device("cpu"), "unit-test machine", "random weights", "trained from scratch",
                  "2 runs of the <code>unit</code> profile"):
        assert shown in page, shown
    other = provenance_note(results, "unit", commit="0000000", root=tiny_root[0])
    assert not other.matches and len(other.problems) == 2
    assert f"computed at commit {git_commit()}, not at this book's commit 0000000" in other.problems[0]
    assert "computed on other data" in other.problems[1]
    page = other._repr_html_()
    assert 'class="admonition warning emlib-published-mismatch emlib-published"' in page
    assert page.index("not at this book") < page.index("runs of the")  # the warnings come first, in bold
    assert "WARNING: The results were computed at commit" in other.text()


def test_weights_fingerprints_are_compared_where_the_weights_are_here(folder: Path, grid: dict, monkeypatch) -> None:
    results = read_published(folder)
    manifest = json.loads(json.dumps(results.manifest))
    manifest["profiles"]["unit"]["weights_fingerprints"]["dinov2_vits14"] = "sha256:aaaa"
    pretend = PublishedResults(results.root, manifest)

    class Found:
        fingerprint = "sha256:bbbb"

    monkeypatch.setattr(published_mod, "find_weights", lambda name: Found())
    note = provenance_note(pretend, "unit", root=grid["data"])
    assert note.problems == ["The weights of dinov2_vits14 here (fingerprint sha256:bbbb) are not those the results were "
                             "computed with (sha256:aaaa)."]
    Found.fingerprint = "sha256:aaaa"
    assert provenance_note(pretend, "unit", root=grid["data"]).matches

    def missing(name):
        raise WeightsError("no weights", why="no weights")

    monkeypatch.setattr(published_mod, "find_weights", missing)
    note = provenance_note(pretend, "unit", root=grid["data"])
    assert note.matches and note.remarks == ["The weights of dinov2_vits14 are not on this machine, so their fingerprint "
                                             "is not compared (recorded: sha256:aaaa)."]


def test_cli_exports_and_checks_a_results_folder(grid: dict, tmp_path: Path, capsys) -> None:
    assert main(["results", "export", str(grid["out"]), "--into", str(tmp_path / "pub"), "--machine", "box"]) == 0
    out = capsys.readouterr().out
    assert "unit: 2 runs at commit" in out and "files left out (weights, caches, logs)" in out
    assert "python -m emlib.book build --profile PROFILE --results" in out
    assert main(["results", "check", str(tmp_path / "pub"), "--root", str(grid["data"])]) == 0
    out = capsys.readouterr().out
    assert "every file matches its SHA-256" in out and "Published results: computed elsewhere" in out
    (tmp_path / "pub" / "unit" / "results.csv").write_text("run_id\n")
    assert main(["results", "check", str(tmp_path / "pub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "changed after export" in err
