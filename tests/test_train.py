"""Training: cache hits skip the backbone, resume equals an uninterrupted run, the grid writes its table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emlib.cache import FeatureCache
from emlib.config import RunConfig, get_profile, grid_configs
from emlib.errors import ConfigError
from emlib.evaluate import center_region, evaluate_both, select_test_slices
from emlib.grid import read_results, run_grid
from emlib.losses import dice_loss, segmentation_loss
from emlib.train import fit, load_trained


def tiny(**changes) -> RunConfig:
    base = get_profile("smoke").base.replace(
        train_slices=2, samples_per_epoch=4, epochs=2, batch_size=2, crop=28, eval_window=28, eval_region=56,
        eval_slices=1, head_channels=8, unet_channels=4,
    )
    return base.replace(**changes)


def test_cache_hit_gives_identical_logits_and_skips_the_backbone() -> None:
    calls = []
    conv = torch.nn.Conv2d(3, 4, 2, stride=2)

    def compute(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return conv(x)

    inputs = torch.randn(6, 3, 8, 8)
    cache = FeatureCache(compute, "k", dtype=torch.float32)
    first = cache.get([0, 2, 4], lambda idx: inputs[idx], torch.device("cpu"))
    again = cache.get([4, 0, 2], lambda idx: inputs[idx], torch.device("cpu"))
    assert calls == [3]  # the second call never reached the backbone
    assert torch.equal(first[[2, 0, 1]], again)
    assert (cache.hits, cache.misses) == (3, 3)
    with torch.no_grad():
        assert torch.allclose(first, conv(inputs[[0, 2, 4]]))


def test_disk_cache_survives_a_new_process(tmp_path: Path) -> None:
    conv = torch.nn.Conv2d(3, 4, 2, stride=2)
    inputs = torch.randn(3, 3, 8, 8)
    cache = FeatureCache(conv, "key", directory=tmp_path)
    cache.get([0, 1], lambda idx: inputs[idx], torch.device("cpu"))
    cache.save()
    warm = FeatureCache(lambda x: pytest.fail("backbone called"), "key", directory=tmp_path)
    assert len(warm) == 2
    warm.get([1], lambda idx: inputs[idx], torch.device("cpu"))


def test_frozen_run_caches_features(shared_data: Path) -> None:
    cfg = tiny(regime="frozen", epochs=2, train_slices=1, crop=224, samples_per_epoch=None, batch_size=10)
    trained = fit(cfg, root=shared_data, progress=False)
    n_tiles = 4 * 5  # one 768x1024 slice in 224-pixel tiles, the last row/column flush with the border
    assert trained.cache_stats == {"misses": n_tiles, "hits": n_tiles}
    seconds = trained.history["seconds"].tolist()
    assert seconds[1] < seconds[0] / 2  # the second epoch never runs the backbone
    assert not any(p.requires_grad for p in trained.model.backbone.parameters())


def test_losses() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    perfect = torch.stack([(1 - target) * 20.0, target * 20.0], dim=1).float()
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(-perfect, target).item() > 0.9
    assert segmentation_loss(perfect, target, "ce").item() < 1e-6
    with pytest.raises(ConfigError, match="loss='focal'"):
        segmentation_loss(perfect, target, "focal")


def test_resume_after_interruption_equals_uninterrupted(shared_data: Path, tmp_path: Path) -> None:
    cfg = tiny(regime="lora", epochs=3)
    straight = fit(cfg, tmp_path / "a", root=shared_data, progress=False)

    class Stop(Exception):
        pass

    def stop_after_first(epoch: int, loss: float) -> None:
        if epoch == 0:
            raise Stop

    with pytest.raises(Stop):
        fit(cfg, tmp_path / "b", root=shared_data, progress=False, on_epoch_end=stop_after_first)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["epoch"] == 0
    resumed = fit(cfg, tmp_path / "b", root=shared_data, progress=False)
    assert len(resumed.history) == 3
    a = {k: v for k, v in straight.model.state_dict().items()}
    b = resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_allclose(straight.history["loss"], resumed.history["loss"])


def test_load_trained_reproduces_predictions(shared_data: Path, tmp_path: Path) -> None:
    trained = fit(tiny(regime="lora"), tmp_path / "run", root=shared_data, progress=False)
    again = load_trained(tmp_path / "run")
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(trained.model(x), again.model(x))


def test_evaluate_both_gives_the_cross_dataset_rows(shared_data: Path) -> None:
    trained = fit(tiny(regime="unet", crop=56, eval_window=56), root=shared_data, progress=False)
    table, raw = evaluate_both(trained, root=shared_data, keep_predictions=True)
    assert list(table.test_set) == ["lucchi_pp", "vnc"]
    assert table.in_domain.tolist() == [True, False]
    assert table.iou_fg.between(0, 1).all()
    assert raw["vnc"].predictions.shape == (1, 56, 56)


def test_helpers() -> None:
    assert select_test_slices(165, 3) == [0, 82, 164]
    assert select_test_slices(3, 5) is None
    assert center_region(np.zeros((2, 10, 20)), 4).shape == (2, 4, 4)


def test_bad_configs_are_one_sentence() -> None:
    with pytest.raises(ConfigError, match="regime='full'"):
        RunConfig(regime="full")
    with pytest.raises(ConfigError, match="set long_edge"):
        RunConfig(crop=None)
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        grid_configs("fast")
    with pytest.raises(ConfigError, match="frozen features cannot be cached"):
        fit(RunConfig(augment=True, pretrained=False))


def test_wrong_crop_is_one_sentence(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match="not a multiple of the patch size 14"):
        fit(tiny(crop=30), root=shared_data, progress=False)


def test_missing_weights_is_one_sentence(shared_data: Path, tmp_path: Path) -> None:
    from emlib.errors import WeightsError

    with pytest.raises(WeightsError, match="nothing.pth"):
        fit(tiny(pretrained=True, weights=str(tmp_path / "nothing.pth")), root=shared_data, progress=False)


def test_grid_writes_table_and_skips_done_runs(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    import emlib.config as config

    profile = config.Profile(
        name="t", description="test", base=tiny(crop=56, eval_window=56), backbones=("dinov2_vits14",), regimes=("frozen", "unet"),
        train_sets=("vnc", "paired"),
    )
    monkeypatch.setitem(config.PROFILES, "t", profile)
    results = run_grid("t", tmp_path, root=shared_data, progress=False)
    assert len(results) == 4 * 2
    for col in ("iou_fg", "weights_label", "train_seconds", "peak_memory_mb", "git_commit", "config_digest"):
        assert col in results
    assert set(results.weights_label) == {"random weights", "trained from scratch"}
    assert (tmp_path / "results.csv").is_file() and json.loads((tmp_path / "results.json").read_text())
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/metrics.json")}
    again = run_grid("t", tmp_path, root=shared_data, progress=False)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/metrics.json")} == stamp
    assert again.iou_fg.tolist() == results.iou_fg.tolist()
    assert len(read_results(tmp_path)) == 8
