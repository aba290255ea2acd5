"""Launching the grid (emlib.grid.launch): the plan, the status, and the submitit launchers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import submitit

import emlib.config as config
import emlib.grid.launch as launch_mod
from emlib.cli import main
from emlib.errors import ConfigError
from emlib.grid.runner import METRICS, run_folder
from emlib.grid.launch import ERROR_LOG, SlurmOptions, gather, launch, plan, read_costs, run_status
from emlib.runfiles import CHECKPOINT

ROWS = len(config.SCORED_TEST_SETS) * len(config.TEST_LABELS)  # results rows per run


def _timing(table: pd.DataFrame) -> list[str]:
    """The columns that differ between two makings of one run: seconds and peak memory."""
    return [c for c in table if c.endswith("_seconds") or c == "peak_memory_mb"]


def _profile(tiny, monkeypatch) -> list[config.RunConfig]:
    """A profile ``t`` of 2 tiny U-Net runs (seeds 0 and 1) and 2 frozen runs; its U-Net runs."""
    base = tiny(regime="unet", crop=56, eval_window=56)
    prof = config.Profile(name="t", description="test", base=base, backbones=("dinov2_vits14",),
                          regimes=("unet", "frozen"), train_sets=("vnc",), seeds=(0, 1))
    monkeypatch.setitem(config.PROFILES, "t", prof)
    return config.grid_configs("t", regimes=["unet"])


def _argv(out: Path, root: Path, *extra: str) -> list[str]:
    return ["grid", "--profile", "t", "--out", str(out), "--root", str(root), "--quiet", *extra]


def test_seed_is_a_selection(tiny, monkeypatch) -> None:
    _profile(tiny, monkeypatch)
    assert [c.seed for c in config.grid_configs("t", seeds=[1])] == [1, 1]
    assert [c.seed for c in config.grid_configs("t", seed=1)] == [1, 1]
    with pytest.raises(ConfigError, match="seeds are integers"):
        config.grid_configs("t", seeds=[-1])


def test_cli_selects_seeds(tiny, tiny_root, tmp_path: Path, monkeypatch, capsys) -> None:
    root, _ = tiny_root
    _profile(tiny, monkeypatch)
    assert main(_argv(tmp_path / "runs", root, "--plan", "--seed", "1", "--regime", "unet")) == 0
    printed = capsys.readouterr().out
    assert "plan: 1 of 1 selected runs" in printed and "vnc-unet-unet-s1-" in printed and "-s0-" not in printed


def test_plan_lists_the_runs_to_make_with_a_total_and_trains_nothing(tiny, tiny_root, tmp_path: Path, monkeypatch, capsys) -> None:
    root, _ = tiny_root
    runs = _profile(tiny, monkeypatch)
    out = tmp_path / "runs"
    assert main(_argv(out, root, "--plan")) == 0
    printed = capsys.readouterr().out
    for cfg in config.grid_configs("t"):
        assert run_folder(cfg, out, root=root).name in printed
    assert "plan: 4 of 4 selected runs" in printed and "total:" in printed and "ESTIMATE" in printed
    assert "no measurement" in printed  # no U-Net row in the table
    assert not out.exists() or not any(out.rglob(METRICS))
    costs = pd.DataFrame([{"backbone": "dinov2_vits14", "regime": "frozen", "batch_size": 2, "input_size": "1022x756",
                           "device": "cpu", "images_per_s": 0.5, "peak_memory_mb": 900.0, "measured_on": "here", "date": ""}])
    frozen = config.grid_configs("t", regimes=["frozen"], seeds=[0])
    table = plan(frozen, out, root=root, costs=costs)
    (row,) = table.to_dict(orient="records")
    # a frozen run with a feature cache runs the backbone once over the 2 training images, then the 56-pixel
    # centre regions of 1+1 test slices (rates are per 1022x756 image: inputs weigh by their pixels)
    test = 2 * 56**2 / (1022 * 756) / 0.5
    assert row["train_images"] == 2 and row["seconds"] == pytest.approx(2 / 0.5 + test)
    (uncached,) = plan([frozen[0].replace(cache="none")], out, root=root, costs=costs).to_dict(orient="records")
    crops = 2 * 4 * 56**2 / (1022 * 756)  # 2 epochs of 4 56-pixel crops through the backbone
    assert uncached["seconds"] == pytest.approx(crops / 0.5 + test)
    assert row["peak_memory_mb"] == 900.0 and "here" in row["measured_on"]
    launch(runs[:1], out, root=root)
    assert main(_argv(out, root, "--plan", "--regime", "unet")) == 0
    assert "plan: 1 of 2 selected runs" in capsys.readouterr().out  # the finished run is skipped


def test_the_shipped_cost_table_has_its_columns() -> None:
    costs = read_costs()
    assert {"backbone", "regime", "batch_size", "input_size", "device", "images_per_s", "peak_memory_mb", "measured_on",
            "date"} <= set(costs.columns)
    assert (costs.images_per_s > 0).all() and costs.measured_on.str.len().gt(0).all()


def test_status_says_done_running_failed_and_missing(tiny, tiny_root, tmp_path: Path, monkeypatch, capsys) -> None:
    root, _ = tiny_root
    runs = _profile(tiny, monkeypatch)
    out = tmp_path / "runs"
    launch(runs[:1], out, root=root)
    frozen = config.grid_configs("t", regimes=["frozen"])
    failed, running = (run_folder(c, out, root=root) for c in frozen)
    failed.mkdir(parents=True)
    (failed / ERROR_LOG).write_text("Traceback ...\nRuntimeError: boom\n")
    running.mkdir(parents=True)
    (running / CHECKPOINT).write_bytes(b"")
    status = run_status(config.grid_configs("t"), out, root=root)
    assert status.state.tolist() == ["done", "failed", "missing", "running"]  # seed 0 (unet, frozen), seed 1 (...)
    assert status.log.tolist()[1] == str(failed / ERROR_LOG)
    assert main(_argv(out, root, "--status")) == 0
    printed = capsys.readouterr().out
    assert str(failed / ERROR_LOG) in printed and "1 done" in printed and "1 missing" in printed


def test_slurm_launcher_builds_the_sbatch_parameters(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # as if srun were here
    options = SlurmOptions(partition="gpu", gpus_per_run=2, time=90, mem="64G", account="lab", array_parallelism=7)
    executor, _ = launch_mod._executor("slurm", tmp_path, 1, options)
    params = executor._executor.parameters
    text = submitit.slurm.slurm._make_sbatch_string(command="true", folder=tmp_path, map_count=12, **params)
    for line in ("--partition=gpu", "--gpus-per-node=2", "--time=90", "--mem=64G", "--account=lab", "--array=0-11%7"):
        assert f"#SBATCH {line}" in text


def test_slurm_launcher_runs_through_submitit(tiny, tiny_root, tmp_path: Path, monkeypatch) -> None:
    root, _ = tiny_root
    runs = _profile(tiny, monkeypatch)
    debug = submitit.DebugExecutor(folder=tmp_path / "logs")
    results = launch(runs, tmp_path / "runs", launcher="slurm", root=root, profile="t", executor=debug)
    assert results.run_id.tolist() == [run_folder(c, tmp_path / "runs", root=root).name for c in runs for _ in range(ROWS)]
    assert (tmp_path / "runs" / "results.csv").is_file()
    requeued = launch_mod.RunJob(str(tmp_path / "runs"), str(root), "t").checkpoint(runs[0])  # on pre-emption
    assert isinstance(requeued, submitit.helpers.DelayedSubmission) and requeued.args == (runs[0],)


def test_local_launcher_gives_the_rows_of_inline(tiny, tiny_root, tmp_path: Path, monkeypatch) -> None:
    root, _ = tiny_root
    runs = _profile(tiny, monkeypatch)
    inline = launch(runs, tmp_path / "inline", root=root, profile="t")
    local = launch(runs, tmp_path / "local", launcher="local", jobs=2, root=root, profile="t")
    assert len(list((tmp_path / "local" / "logs").glob("*_log.out"))) == 2  # two processes
    assert sorted(_timing(inline)) == ["eval_seconds", "peak_memory_mb", "train_seconds"]
    pd.testing.assert_frame_equal(inline.drop(columns=_timing(inline)), local.drop(columns=_timing(local)),
                                  check_exact=True)  # bit-identical metrics


def test_a_failed_run_is_completed_by_the_same_command(tiny, tiny_root, tmp_path: Path, monkeypatch, capsys) -> None:
    root, _ = tiny_root
    runs = _profile(tiny, monkeypatch)
    out = tmp_path / "runs"
    real = launch_mod.run_one

    def flaky(cfg, *args, **kwargs):
        if cfg.seed == 1:
            raise RuntimeError("node lost")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(launch_mod, "run_one", flaky)
    with pytest.raises(RuntimeError, match="node lost"):
        launch(runs, out, root=root)
    assert run_status(runs, out, root=root).state.tolist() == ["done", "failed"]
    first = run_folder(runs[0], out, root=root) / METRICS
    stamp = first.stat().st_mtime_ns
    monkeypatch.setattr(launch_mod, "run_one", real)
    assert main(_argv(out, root, "--regime", "unet", "--launcher", "inline")) == 0
    assert run_status(runs, out, root=root).state.tolist() == ["done", "done"]
    assert first.stat().st_mtime_ns == stamp  # only the failed run was made again
    assert len(gather(runs, out, root=root, table=None)) == 2 * ROWS


def test_launchers_without_submitit_say_how_to_install_it(tiny, tiny_root, tmp_path: Path, monkeypatch, capsys) -> None:
    root, _ = tiny_root
    _profile(tiny, monkeypatch)
    monkeypatch.setattr(launch_mod, "_submitit", lambda: None)
    assert main(_argv(tmp_path / "runs", root, "--launcher", "local")) == 2
    assert 'install it with pip install -e ".[cluster]" in the clone' in capsys.readouterr().err


def test_slurm_launcher_off_a_cluster_is_one_sentence(tiny, tiny_root, tmp_path: Path, monkeypatch, capsys) -> None:
    root, _ = tiny_root
    _profile(tiny, monkeypatch)
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: -1))  # no srun
    assert main(_argv(tmp_path / "runs", root, "--launcher", "slurm", "--regime", "unet")) == 2
    assert "no SLURM on this machine" in capsys.readouterr().err


def test_plan_scales_by_the_pixels_of_crops_and_small_slices(tiny, tiny_root, tmp_path: Path) -> None:
    """Rates are for whole slices at 1022x756: crops per epoch and slices at a small long side cost less (issue 12)."""
    root, _ = tiny_root
    costs = pd.DataFrame([{"backbone": "dinov2_vits14", "regime": r, "batch_size": 1, "input_size": "1022x756",
                           "device": "cpu", "images_per_s": 0.5, "peak_memory_mb": 900.0, "measured_on": "here", "date": ""}
                          for r in ("frozen", "lora")])
    lora = tiny(regime="lora", crop=112, samples_per_epoch=4, epochs=3, eval_window=112, eval_region=None)
    (row,) = plan([lora], tmp_path, root=root, costs=costs).to_dict(orient="records")
    crops = 3 * 4 * 112**2 / (1022 * 756)  # 3 epochs of 4 crops, in measured-size images
    windows = 12 * 9 * 112**2 / (1022 * 756)  # a test slice in 112-px windows at 25 % overlap: 12 x 9 of them
    assert row["seconds"] == pytest.approx(crops / 0.5 + 2 * windows / 0.5) and row["input"] == "112px crops, 4/epoch"
    whole = lora.replace(crop=None, long_edge=511, samples_per_epoch=None, eval_window=None)
    (row,) = plan([whole], tmp_path, root=root, costs=costs).to_dict(orient="records")
    quarter = (511 / 1022) ** 2
    assert row["seconds"] == pytest.approx(3 * row["train_images"] * quarter / 0.5 + 2 * quarter / 0.5)
    assert row["input"] == "slices at 511px"


def test_plan_prices_each_input_with_the_row_of_the_nearest_size(tiny, tiny_root, tmp_path: Path) -> None:
    """Crops take the rate measured on crops, the test windows the rate measured nearest their size: per pixel a
    224-px crop and a whole slice cost differently (attention grows with the square of the tokens)."""
    root, _ = tiny_root
    rows = [("frozen", "1022x756", 0.1), ("lora", "1022x756", 0.01), ("frozen", "112x112", 40.0), ("lora", "112x112", 10.0)]
    costs = pd.DataFrame([{"backbone": "dinov2_vits14", "regime": r, "batch_size": 1, "input_size": size, "device": "cpu",
                           "images_per_s": rate, "peak_memory_mb": 900.0, "measured_on": "here", "date": ""}
                          for r, size, rate in rows])
    lora = tiny(regime="lora", crop=112, samples_per_epoch=4, epochs=3, eval_window=112, eval_region=None)
    (row,) = plan([lora], tmp_path, root=root, costs=costs).to_dict(orient="records")
    assert row["seconds"] == pytest.approx(3 * 4 / 10.0 + 2 * 12 * 9 / 40.0)
    whole = lora.replace(crop=None, long_edge=1022, samples_per_epoch=None, eval_window=None)
    (row,) = plan([whole], tmp_path, root=root, costs=costs).to_dict(orient="records")
    assert row["seconds"] == pytest.approx(3 * row["train_images"] / 0.01 + 2 / 0.1)
