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
