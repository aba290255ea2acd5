"""The experiment grid (emlib.grid.runner): the one runner of every results table, resuming, the CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import emlib.config as config
from emlib.evaluation import scored_rows
from emlib.cli import build_parser, main
from emlib.errors import ConfigError, DataError
from emlib.train import fit
from emlib.grid.runner import METRICS, git_commit, grid_command, read_results, run_configs, run_folder, run_grid
from emlib.preflight import input_fingerprints


ROWS = len(config.SCORED_TEST_SETS) * len(config.TEST_LABELS)  # results rows per run (emlib.evaluation.evaluate_both)


def _tiny_profile(tiny, monkeypatch, name: str = "t", base: config.RunConfig | None = None, **axes) -> config.Profile:
    """Register a profile of tiny runs under ``name`` (the CLI's --profile choices include it)."""
    axes = {"backbones": ("dinov2_vits14",), "regimes": ("frozen", "unet"), "train_sets": ("vnc", "paired"), **axes}
    base = tiny(crop=56, eval_window=56) if base is None else base
    profile = config.Profile(name=name, description="test", base=base, **axes)
    monkeypatch.setitem(config.PROFILES, name, profile)
    return profile


def test_grid_writes_table_and_skips_done_runs(tiny, shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    _tiny_profile(tiny, monkeypatch)
    results = run_grid("t", tmp_path, root=shared_data, progress=False)
    assert len(results) == 4 * ROWS
    for col in ("iou_fg", "weights_label", "train_seconds", "peak_memory_mb", "git_commit", "config_digest"):
        assert col in results
    assert set(results.weights_label) == {"random weights", "trained from scratch"}
    assert (tmp_path / "results.csv").is_file() and json.loads((tmp_path / "results.json").read_text())
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/metrics.json")}
    again = run_grid("t", tmp_path, root=shared_data, progress=False)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/metrics.json")} == stamp
    assert again.iou_fg.tolist() == results.iou_fg.tolist()
    assert len(read_results(tmp_path)) == 4 * ROWS


def test_run_configs_writes_labels_and_the_table(tiny, tiny_root, tmp_path: Path) -> None:
    root, _ = tiny_root
    configs = [tiny(regime="unet", train_set=t, crop=32, eval_window=32) for t in ("lucchi_pp", "vnc")]
    out = tmp_path / "grid"
    results = run_configs(configs, out, labels={"note": ["first", "second"]}, table="mine", root=root, progress=False,
                          profile="unit")
    assert len(results) == 2 * ROWS and results.note.tolist() == ["first"] * ROWS + ["second"] * ROWS
    folders = [run_folder(c, out, root=root) for c in configs]
    assert results.run_id.tolist() == [f.name for f in folders for _ in range(ROWS)]
    assert all(f.name.startswith(c.run_id + "-") for f, c in zip(folders, configs))
    assert (results.profile == "unit").all() and (results.config_digest == [c.digest() for c in configs for _ in range(ROWS)]).all()
    assert results.git_commit.iloc[0] == git_commit()
    written = pd.read_csv(out / "mine.csv")
    assert written.note.tolist() == results.note.tolist() and not (out / "mine.json").exists()
    for cfg, folder in zip(configs, folders):
        saved = json.loads((folder / METRICS).read_text())
        assert config.RunConfig.from_dict(saved["config"]) == cfg and len(saved["rows"]) == ROWS
        assert "note" not in saved["rows"][0]  # labels belong to the table, not to the run
    again = run_configs(configs[::-1], out, labels={"note": ["b", "a"]}, root=root, progress=False)  # read back
    first, second = results.iou_fg.tolist()[:ROWS], results.iou_fg.tolist()[ROWS:]
    assert again.note.tolist() == ["b"] * ROWS + ["a"] * ROWS and again.iou_fg.tolist() == second + first
    assert pd.read_csv(out / "mine.csv").note.tolist() == results.note.tolist()  # table=None writes no table
    assert len(read_results(out)) == 2 * ROWS
    run_configs(configs[:1], out, table="one", json_table=True, root=root, progress=False)
    assert json.loads((out / "one.json").read_text())[0]["run_id"] == folders[0].name


def test_run_configs_needs_one_label_per_config(tiny, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"labels\['remedy'\] has 1 values for 2 configs"):
        run_configs([tiny(), tiny(seed=1)], tmp_path, labels={"remedy": ["x"]}, progress=False)
    assert not any(tmp_path.iterdir())  # nothing was trained


def test_read_results_of_an_empty_folder_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no finished runs in .*emlib grid --profile smoke"):
        read_results(tmp_path)


def test_grid_command() -> None:
    assert grid_command("smoke") == "emlib grid --profile smoke"
    assert grid_command("smoke", "runs/smoke", regimes=["lora"], train_sets=["paired"]) == (
        "emlib grid --profile smoke --out runs/smoke --regime lora --train-set paired"
    )
    cmd = grid_command("paper", "runs/p", backbone="dinov3_vitl16", regimes=["frozen", "lora"],
                       train_sets=["vnc", "paired"], remedies=True)
    assert cmd == (
        "emlib grid --profile paper --out runs/p --backbone dinov3_vitl16 --regime frozen --regime lora "
        "--train-set vnc --train-set paired --remedies"
    )
    args = build_parser().parse_args(cmd.split()[1:])  # the command is one the CLI accepts, meaning the same
    assert (args.profile, args.out, args.backbone, args.regime, args.train_set, args.remedies) == (
        "paper", "runs/p", "dinov3_vitl16", ["frozen", "lora"], ["vnc", "paired"], True,
    )


def test_cli_grid_selects_regime_and_train_set(tiny, tiny_root, tmp_path: Path, monkeypatch, capsys) -> None:
    root, _ = tiny_root
    _tiny_profile(tiny, monkeypatch, base=tiny(), regimes=("frozen", "lora", "unet"), train_sets=config.TRAIN_SETS)
    out = tmp_path / "runs"
    argv = ["grid", "--profile", "t", "--out", str(out), "--root", str(root), "--regime", "lora", "--train-set", "paired", "--quiet"]
    assert main(argv) == 0
    (expected,) = config.grid_configs("t", regimes=["lora"], train_sets=["paired"])
    folder = run_folder(expected, out, root=root).name
    assert sorted(p.parent.name for p in out.glob(f"*/{METRICS}")) == [folder]
    table = pd.read_csv(out / "results.csv")
    assert table.run_id.tolist() == [folder] * ROWS and scored_rows(table).test_set.tolist() == ["lucchi_pp", "vnc"]
    assert set(table.regime) == {"lora"} and set(table.train_set) == {"paired"} and set(table.profile) == {"t"}
    printed = capsys.readouterr().out
    assert "paired" in printed and "lora" in printed and "random weights" in printed and "unet" not in printed


def test_cli_grid_passes_the_selection_on(monkeypatch, capsys) -> None:
    import emlib.cli as cli

    calls: dict[str, dict] = {}
    row = {"train_set": "paired", "regime": "lora", "backbone": "dinov3_vits16", "test_set": "vnc", "iou_fg": 0.5,
           "weights_label": "random weights"}

    def fake_grid(configs, out, **kwargs):  # the CLI runs grid_configs' runs (each backbone with its --weights file)
        calls["grid"] = dict(kwargs, out=out, backbone={c.backbone for c in configs if c.regime != "unet"},
                             regimes=sorted({c.regime for c in configs}), train_sets=sorted({c.train_set for c in configs}),
                             pretrained=any(c.pretrained for c in configs))
        return pd.DataFrame([row])

    def fake_remedies(profile, out, **kwargs):
        calls["remedies"] = dict(kwargs, profile=profile, out=out)
        return pd.DataFrame()

    monkeypatch.setattr("emlib.grid.runner.run_configs", fake_grid)  # what run_grid, the CLI's runner, calls
    monkeypatch.setattr(cli, "run_alignment_grid", fake_remedies)
    argv = ["grid", "--backbone", "dinov3_vits16", "--regime", "lora", "--regime", "unet", "--train-set", "paired",
            "--remedies", "--random-weights", "--quiet"]
    assert main(argv) == 0
    grid, remedies = calls["grid"], calls["remedies"]
    assert (grid["profile"], grid["out"], grid["backbone"], grid["regimes"], grid["train_sets"]) == (
        "smoke", "runs/smoke", {"dinov3_vits16"}, ["lora", "unet"], ["paired"],
    )
    assert grid["pretrained"] is False and grid["progress"] is False
    assert remedies["regimes"] == ["lora"] and remedies["backbone"] == "dinov3_vits16" and remedies["pretrained"] is False
    assert "0.500" in capsys.readouterr().out


def _one_pixel_changed(root: Path, rel: str) -> None:
    """Change one pixel of a slice of a tiny copy (same names, other content)."""
    from PIL import Image

    path = root / rel
    arr = np.array(Image.open(path))
    arr[0, 0] ^= 1
    Image.fromarray(arr).save(path)


def test_run_folders_and_feature_caches_follow_the_data_and_the_weights(tiny, tiny_root, tmp_path: Path, monkeypatch) -> None:
    root, _ = tiny_root
    other = tmp_path / "other"
    shutil.copytree(root / "lucchi_pp", other / "lucchi_pp")
    shutil.copytree(root / "vnc", other / "vnc")
    cfg = tiny(crop=28, eval_window=28)
    assert run_folder(cfg, tmp_path, root=root) == run_folder(cfg, tmp_path, root=other)  # an equal copy: the same run
    _one_pixel_changed(other, "lucchi_pp/Lucchi++/Train_In/mask0001.png")
    assert run_folder(cfg, tmp_path, root=root) != run_folder(cfg, tmp_path, root=other)
    assert run_folder(cfg.replace(regime="unet"), tmp_path, root=root) != run_folder(
        cfg.replace(regime="unet"), tmp_path, root=other)

    weights = tmp_path / "weights"  # a weights file named by EMLIB_WEIGHTS: its content names the run
    weights.mkdir()
    torch.manual_seed(0)
    spec_file = "dinov2_vits14_pretrain.pth"
    torch.save({"w": torch.zeros(1)}, weights / spec_file)
    monkeypatch.setenv("EMLIB_WEIGHTS", str(weights))
    pretrained = cfg.replace(pretrained=True)
    first = run_folder(pretrained, tmp_path, root=root)
    torch.save({"w": torch.ones(1)}, weights / spec_file)
    assert run_folder(pretrained, tmp_path, root=root) != first
    monkeypatch.setenv("EMLIB_WEIGHTS", str(tmp_path))  # no file there: the hub's weights, by their hub id
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-hub"))
    monkeypatch.setattr("emlib.models.hub.offline_reason", lambda: None)  # as if online (nothing is downloaded here)
    assert run_folder(pretrained, tmp_path, root=root) not in (first, run_folder(cfg, tmp_path, root=root))


def test_a_disk_feature_cache_is_not_served_for_other_data(tiny, tiny_root, tmp_path: Path) -> None:
    root, _ = tiny_root
    cfg = tiny(regime="frozen", cache="disk", crop=28, eval_window=28, samples_per_epoch=None, epochs=1)
    first = fit(cfg, tmp_path / "runs" / "a", root=root, progress=False)
    assert first.cache_stats["hits"] == 0 and first.cache_stats["misses"] > 0
    again = fit(cfg, tmp_path / "runs" / "b", root=root, progress=False)  # same inputs: served from disk
    assert again.cache_stats == {"hits": first.cache_stats["misses"], "misses": 0}
    _one_pixel_changed(root, "lucchi_pp/Lucchi++/Train_In/mask0000.png")
    swapped = fit(cfg, tmp_path / "runs" / "c", root=root, progress=False)
    assert swapped.cache_stats == {"hits": 0, "misses": first.cache_stats["misses"]}
    assert len(list((tmp_path / "runs" / ".feature-cache").glob("*.safetensors"))) == 2


def test_bad_configs_end_before_any_work(tiny, tiny_root, tmp_path: Path) -> None:
    root, _ = tiny_root
    out = tmp_path / "out"
    good = tiny(regime="unet", crop=32, eval_window=32)
    for bad, message in (
        (tiny(backbone="dinov9_vits14"), "unknown backbone 'dinov9_vits14'"),
        (tiny(crop=30), "crop=30 is not a multiple of the patch size 14 of dinov2_vits14; use e.g. crop=28"),
        (tiny(regime="unet", crop=36), "crop=36 is not a multiple of the U-Net's pooling factor 8; use e.g. crop=32"),
        (tiny(eval_window=30), "eval_window=30 is not a multiple of the patch size 14"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            run_configs([good, bad], out, root=root, progress=False)  # the good run first: it must not start
        assert not out.exists()


def test_the_results_table_grows_as_runs_finish(tiny, tiny_root, tmp_path: Path, monkeypatch) -> None:
    import emlib.grid.runner as grid

    root, _ = tiny_root
    configs = [tiny(regime="unet", train_set=t, crop=32, eval_window=32) for t in ("lucchi_pp", "vnc")]
    real = grid.run_one
    seen = []

    def run_one(cfg, out, **kwargs):
        if cfg is configs[1]:  # the second run starts: the table already holds the first
            seen.append(pd.read_csv(out / "t.csv").run_id.tolist())
            raise KeyboardInterrupt
        return real(cfg, out, **kwargs)

    monkeypatch.setattr(grid, "run_one", run_one)
    with pytest.raises(KeyboardInterrupt):
        run_configs(configs, tmp_path, table="t", root=root, progress=False)
    assert seen == [[run_folder(configs[0], tmp_path, root=root).name] * ROWS]


def test_a_damaged_metrics_file_is_refused_with_the_fix(tiny, tiny_root, tmp_path: Path) -> None:
    root, _ = tiny_root
    cfg = tiny(regime="unet", crop=32, eval_window=32)
    folder = run_folder(cfg, tmp_path, root=root)
    folder.mkdir()
    (folder / METRICS).write_text('{"config": {"backbone": "din')
    with pytest.raises(DataError, match=r"metrics\.json cannot be read \(JSONDecodeError: .*\); delete it and run the same"):
        run_configs([cfg], tmp_path, root=root, progress=False)
    with pytest.raises(DataError, match=r"metrics\.json cannot be read"):
        read_results(tmp_path)


def test_grid_seed_override_runs_that_seed_and_axes_are_selected_by_name() -> None:
    assert {c.seed for c in config.grid_configs("smoke", seed=3)} == {3}
    with pytest.raises(ConfigError, match=r"regime is an axis of the grid; select it with regimes=\['lora'\]"):
        config.grid_configs("smoke", regime="lora")
    with pytest.raises(ConfigError, match=r"unknown RunConfig keys \['epoch'\]"):
        config.grid_configs("smoke", epoch=3)


def test_a_run_finished_under_its_legacy_name_is_read_back(tiny, tiny_root, tmp_path: Path) -> None:
    """Issue 22: folders named before device, cache and the weights path left a run's identity keep being read."""
    from emlib.runfiles import write_json

    root, _ = tiny_root
    cfg = tiny(device="cpu")
    assert cfg.legacy_run_id != cfg.run_id and cfg.replace(device="auto").run_id == cfg.run_id
    out = tmp_path / "grid"
    folder = run_folder(cfg, out, root=root)
    legacy = out / folder.name.replace(cfg.run_id, cfg.legacy_run_id)
    inputs = input_fingerprints(cfg, root=root)  # recorded in every row: a run is reused only on the same inputs
    row = {"run_id": legacy.name, "test_set": "vnc", "iou_fg": 0.25, "data_fingerprint": inputs["data"],
           "weights_fingerprint": inputs["weights"]}
    legacy.mkdir(parents=True)
    write_json(legacy / METRICS, {"config": cfg.to_dict(), "rows": [row]})
    assert run_folder(cfg, out, root=root) == legacy
    assert run_configs([cfg], out, root=root, progress=False).to_dict(orient="records") == [row]  # nothing trained
    assert run_folder(cfg.replace(device="auto"), out, root=root) == folder  # its legacy name was another one


def test_a_run_finished_before_the_mixed_and_published_rows_is_tested_again_not_trained(tiny, tiny_root, tmp_path: Path) -> None:
    """Issue 19: a run whose metrics.json holds only the per-test-set rows gets the new rows from its saved model."""
    from emlib.runfiles import read_json, write_json

    root, _ = tiny_root
    cfg = tiny(regime="unet", crop=32, eval_window=32)
    first = run_configs([cfg], tmp_path, root=root, progress=False)
    folder = run_folder(cfg, tmp_path, root=root)
    old = first[first.test_labels.eq("correct") & first.test_set.isin(["lucchi_pp", "vnc"])].drop(columns="test_labels")
    write_json(folder / METRICS, {"config": cfg.to_dict(), "rows": old.assign(train_seconds=123.0).to_dict(orient="records")})
    model_stamp = (folder / "model.safetensors").stat().st_mtime_ns
    again = run_configs([cfg], tmp_path, root=root, progress=False)
    assert len(again) == len(first) and set(again.test_labels) == {"correct", "published"}
    assert (again.train_seconds == 123.0).all()  # how it trained is kept
    assert again.iou_fg.tolist() == pytest.approx(first.iou_fg.tolist())
    assert (folder / "model.safetensors").stat().st_mtime_ns == model_stamp  # not trained again
    assert "test_labels" in read_json(folder / METRICS, fix="-")["rows"][0]


# ----------------------------------------------------------------------------- issue 23: run folders that lie, tables that shrink


def _unet_profile(tiny, monkeypatch, train_sets=("vnc", "lucchi_pp")) -> config.Profile:
    """Two few-second U-Net runs (no backbone, no weights)."""
    return _tiny_profile(tiny, monkeypatch, base=tiny(crop=32, eval_window=32), regimes=("unet",), train_sets=train_sets)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_full_disk_while_a_checkpoint_is_written_is_one_sentence_and_keeps_the_last_one(
    tiny, tiny_root, tmp_path: Path, monkeypatch, capsys,
) -> None:
    """The SafetensorError "No space left on device" traceback before; now exit 2, one sentence, and the rerun resumes."""
    import safetensors
    import safetensors.torch

    from emlib.runfiles import CHECKPOINT, load_state

    root, _ = tiny_root
    _unet_profile(tiny, monkeypatch, train_sets=("vnc",))
    out = tmp_path / "runs"
    (cfg,) = config.grid_configs("t")
    run_dir = run_folder(cfg, out, root=root)
    real, calls = safetensors.torch.save_file, []

    def save_file(tensors, filename, metadata=None):
        if f".{CHECKPOINT}." in filename:
            calls.append(filename)
            if len(calls) == 2:  # the second epoch's checkpoint: the first one is on disk
                raise safetensors.SafetensorError(
                    'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    argv = ["grid", "--profile", "t", "--out", str(out), "--root", str(root), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"emlib: error: the disk of {run_dir} has no room for {CHECKPOINT} (about ") and err.count("\n") == 1
    assert "needed, " in err and "free; the previous checkpoint.safetensors is kept); free that much space there" in err
    assert "run the same command again, which resumes where it stopped" in err and "Traceback" not in err
    assert load_state(run_dir / CHECKPOINT, fix="-", tensors=False)["epoch"] == 0  # the last state is intact
    assert not (run_dir / METRICS).exists() and not list(out.rglob("*.incomplete"))
    monkeypatch.setattr(safetensors.torch, "save_file", real)  # room again
    assert main(argv) == 0 and (run_dir / METRICS).is_file()


def test_a_malformed_metrics_file_is_one_sentence_not_a_nan_row_or_a_traceback(
    tiny, tiny_root, tmp_path: Path, monkeypatch, capsys,
) -> None:
    import time

    root, _ = tiny_root
    _unet_profile(tiny, monkeypatch)
    out = tmp_path / "runs"
    argv = ["grid", "--profile", "t", "--out", str(out), "--root", str(root), "--quiet"]
    assert main(argv) == 0
    first, second = (run_folder(c, out, root=root) for c in config.grid_configs("t"))
    good = json.loads((first / METRICS).read_text())
    capsys.readouterr()
    cases = [  # what metrics.json holds, and the sentence
        ({"config": good["config"], "rows": [{"miou": 0.5, "note": "x"}]},
         "holds rows with none of the columns of a test row (missing run_id, test_set, iou_fg, data_fingerprint, "
         "weights_fingerprint); delete it and run the same command again to test the run again (its trained model is kept)"),
        ({"config": good["config"], "rows": [dict(r, iou_fg="0.5") for r in good["rows"]]},
         f"holds iou_fg='0.5' in its {good['rows'][0]['test_set']} row, which is not a number; delete it and run the same"),
        (json.loads((second / METRICS).read_text()),  # copied from the other run: it listed that run twice
         f"holds the rows of run {second.name}, not of this folder's run {first.name} "
         "(it was copied from another run's folder); delete it and run the same command again to test the run again"),
    ]
    for saved, sentence in cases:
        (first / METRICS).write_text(json.dumps(saved))
        before = _snapshot(out)
        t0 = time.perf_counter()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert time.perf_counter() - t0 < 10 and err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"emlib: error: {first / METRICS} ") and sentence in err, err
        assert _snapshot(out) == before  # nothing trained or written, the table kept
        with pytest.raises(DataError, match=re.escape(sentence[:60])):
            read_results(out)


def test_a_run_folder_of_other_data_is_not_reused_and_read_results_does_not_mix_two_data(
    tiny, tiny_root, tmp_path: Path, monkeypatch, capsys,
) -> None:
    import time

    root, _ = tiny_root
    other = tmp_path / "other"
    shutil.copytree(root / "lucchi_pp", other / "lucchi_pp")
    shutil.copytree(root / "vnc", other / "vnc")
    _one_pixel_changed(other, "vnc/groundtruth-drosophila-vnc-master/stack1/raw/00.tif")
    (cfg,) = config.grid_configs(_unet_profile(tiny, monkeypatch, train_sets=("lucchi_pp",)))
    out = tmp_path / "runs"
    mine, theirs = (run_configs([cfg], out, root=r, progress=False) for r in (root, other))
    here, there = run_folder(cfg, out, root=root), run_folder(cfg, out, root=other)
    assert here != there and mine.data_fingerprint.iloc[0] != theirs.data_fingerprint.iloc[0]

    with pytest.raises(DataError, match=r"the runs in .* were made on 2 different data copies \(data fingerprints (modified:)?\w{12} \(1 runs\), "
                                        r"(modified:)?\w{12} \(1 runs\)\), whose rows are not mixed; pass data_fingerprint="):
        read_results(out)
    chosen = read_results(out, data_fingerprint=mine.data_fingerprint.iloc[0][:-50])
    assert set(chosen.run_id) == {here.name} and len(chosen) == ROWS
    with pytest.raises(DataError, match=r"no finished run in .* was made on data 'abc'; its runs were made on data (modified:)?\w{12} \(1 runs\)"):
        read_results(out, data_fingerprint="abc")

    shutil.rmtree(there)
    shutil.copytree(here, there)  # a run made on this data, copied in under the other data's folder name
    before = _snapshot(out)
    t0 = time.perf_counter()
    assert main(["grid", "--profile", "t", "--out", str(out), "--root", str(other), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert time.perf_counter() - t0 < 10 and err.count("\n") == 1
    assert err.startswith(f"emlib: error: {there} holds a run made on other data (recorded data fingerprint "
                          f"{mine.data_fingerprint.iloc[0][:16]}, now {theirs.data_fingerprint.iloc[0][:16]}), so it is not reused; "
                          f"move {there} out of {out} (nothing in it is this run's) and run the same command again"), err
    assert _snapshot(out) == before
    for name in (METRICS, "config.json"):  # a whole folder of another config under this run's name
        saved = json.loads((there / name).read_text())
        (there / name).write_text(json.dumps(dict(saved, config=cfg.replace(seed=5).to_dict()) if name == METRICS
                                             else cfg.replace(seed=5).to_dict()))
    with pytest.raises(DataError, match=re.escape(f"{there} holds the run {cfg.replace(seed=5).run_id}, not {cfg.run_id} "
                                                  "(its config differs); move")):
        run_configs([cfg], out, root=other, progress=False)


def test_a_selection_rerun_keeps_the_other_finished_runs_rows(tiny, tiny_root, tmp_path: Path, monkeypatch) -> None:
    """Issue 23: ``emlib grid --train-set vnc`` rewrote results.csv/.json with only its rows (4 -> 2 runs)."""
    root, _ = tiny_root
    _unet_profile(tiny, monkeypatch)
    out = tmp_path / "runs"
    argv = ["grid", "--profile", "t", "--out", str(out), "--root", str(root), "--quiet"]
    assert main(argv) == 0
    table = pd.read_csv(out / "results.csv")
    assert table.run_id.nunique() == 2 and len(table) == 2 * ROWS
    for selection in (["--train-set", "vnc"], ["--train-set", "lucchi_pp"]):
        assert main([*argv, *selection]) == 0
        again = pd.read_csv(out / "results.csv")
        assert again.run_id.tolist() == table.run_id.tolist() and again.iou_fg.tolist() == pytest.approx(table.iou_fg.tolist())
        assert [r["run_id"] for r in json.loads((out / "results.json").read_text())] == table.run_id.tolist()
    vnc, lucchi = (run_folder(c, out, root=root) for c in config.grid_configs("t"))
    shutil.rmtree(lucchi)  # a run whose folder is gone is no longer finished: its rows leave the table
    assert main([*argv, "--train-set", "vnc"]) == 0
    assert set(pd.read_csv(out / "results.csv").run_id) == {vnc.name}
    (out / "results.csv").write_text('run_id,iou_fg\n"x')
    with pytest.raises(DataError, match=r"results\.csv cannot be read \(.*\); delete it \(the next command writes it again"):
        run_grid("t", out, root=root, progress=False)


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from emlib.runfiles import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    deadline = time.time() + 120
    while not Path(sys.argv[2]).exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(3)  # the other grid has made its run and waits for this one
"""


def test_a_run_another_process_makes_is_skipped_then_waited_for(tiny, tiny_root, tmp_path: Path) -> None:
    """Issue 23: two ``emlib grid`` on one --out trained the same runs; now the second says so and makes the others first."""
    import os
    import subprocess
    import sys

    from emlib.grid.runner import run_one

    root, _ = tiny_root
    configs = [tiny(regime="unet", train_set=t, crop=32, eval_window=32) for t in ("vnc", "lucchi_pp")]
    out = tmp_path / "runs"
    held, other = (run_folder(c, out, root=root) for c in configs)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(held), str(other / METRICS)], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = f"run {held.name} in {out} is being made by another process (pid {holder.pid} on "
        with pytest.warns(RuntimeWarning, match=re.escape(busy)):
            assert run_one(configs[0], out, root=root, progress=False, wait=False) is None
        assert sorted(p.name for p in held.iterdir()) == [".lock"]  # nothing made
        with pytest.warns(RuntimeWarning) as record:
            results = run_configs(configs, out, table="results", root=root, progress=False)
        holder.wait(timeout=60)
    finally:
        holder.kill()
    said = [str(w.message) for w in record if busy in str(w.message)]
    assert [s.split("); ")[1] for s in said] == ["this one goes on with the other runs and comes back to it",
                                                "this one waits for it"]
    assert results.run_id.tolist() == [held.name] * ROWS + [other.name] * ROWS  # in the configs' order
    assert (held / METRICS).is_file() and set(pd.read_csv(out / "results.csv").run_id) == {held.name, other.name}
    assert not list(out.rglob(".lock"))  # each lock went with its run
