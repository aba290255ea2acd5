"""The feature store of frozen runs (emlib.featurestore): keyed on every input of the tokens, shared by runs, never stale."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from emlib.config import RunConfig
from emlib.evaluation import evaluate_both
from emlib.featurestore import STORE_FOLDER, window_store, tile_store
from emlib.plugins import plugins_for
from emlib.train import fit

FINGERPRINTS = {"data": "data-a", "weights": "weights-a"}


@pytest.fixture()
def fingerprints(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The content fingerprints the keys see (the real ones follow files: tests/grid/test_runner.py changes them)."""
    seen = dict(FINGERPRINTS)
    monkeypatch.setattr("emlib.featurestore.input_fingerprints", lambda cfg, root=None: dict(seen))
    return seen


def _train_key(cfg: RunConfig, **changes) -> str:
    inputs = {"source": "lucchi_pp", "tile": (56, 56), "n_items": 10, "part": "train", "mean": (0.5,) * 3,
              "std": (0.2,) * 3, "patch_size": 14, **changes}
    store = tile_store(cfg, torch.nn.Identity(), plugins=plugins_for(cfg), **inputs)
    return store.key


def _test_key(cfg: RunConfig, **changes) -> str:
    inputs = {"slice_ids": ("0", "5"), "shape": (112, 112), "window": 56, "mean": (0.5,) * 3, "std": (0.2,) * 3,
              "patch_size": 14, **changes}
    return window_store(cfg, torch.nn.Identity(), "lucchi_pp", plugins=plugins_for(cfg), **inputs).key


def test_a_key_changes_with_every_input_of_the_tokens_and_with_nothing_else(fingerprints) -> None:
    cfg = RunConfig(pretrained=True, crop=56)
    key = _train_key(cfg)
    changed = {
        "backbone": _train_key(cfg.replace(backbone="dinov2_vitb14")),
        "position interpolation": _train_key(cfg.replace(pos_interpolation="meta")),
        "input remedy": _train_key(cfg.replace(train_set="paired", input_alignment="histmatch")),
        "slices": _train_key(cfg.replace(train_slices=3)),
        "validation split": _train_key(cfg.replace(val_fraction=0.1)),
        "long side": _train_key(cfg.replace(long_edge=512)),
        "source": _train_key(cfg, source="vnc"),
        "tile": _train_key(cfg, tile=(112, 112)),
        "tiles": _train_key(cfg, n_items=11),
        "part": _train_key(cfg, part="val"),
        "normalisation": _train_key(cfg, mean=(0.4,) * 3),
        "patch": _train_key(cfg, patch_size=16),
        "random weights of another seed": _train_key(cfg.replace(pretrained=False, seed=1)),
    }
    fingerprints["weights"] = "weights-b"
    changed["weights"] = _train_key(cfg)
    fingerprints.update(FINGERPRINTS, data="data-b")
    changed["data"] = _train_key(cfg)
    fingerprints.update(FINGERPRINTS)
    assert _train_key(cfg) == key
    assert len({key, *changed.values()}) == len(changed) + 1, "some input does not change the key"
    same = [cfg.replace(seed=3), cfg.replace(train_set="paired"), cfg.replace(head="linear", lr=1e-3, epochs=2),
            cfg.replace(train_set="paired", feature_norm=True), cfg.replace(cache="disk"), cfg.replace(samples_per_epoch=7)]
    assert {_train_key(c) for c in same} == {key}  # what only the head, the draws or where it runs depend on


def test_a_test_key_follows_the_windows_and_the_slices(fingerprints) -> None:
    cfg = RunConfig(pretrained=True, crop=56, eval_window=56, eval_region=112)
    key = _test_key(cfg)
    changed = [_test_key(cfg, window=28), _test_key(cfg, window=None), _test_key(cfg, slice_ids=("0", "6")),
               _test_key(cfg, shape=(112, 140)), _test_key(cfg.replace(eval_region=224)),
               _test_key(cfg.replace(input_alignment="clahe", train_set="paired")), _train_key(cfg)]
    assert len({key, *changed}) == len(changed) + 1
    assert _test_key(cfg.replace(seed=2, train_set="vnc", heads_per_domain=False)) == key


def test_no_store_for_lora_unet_or_cache_none(fingerprints) -> None:
    for cfg in (RunConfig(regime="lora"), RunConfig(regime="unet"), RunConfig(cache="none")):
        assert tile_store(cfg, torch.nn.Identity(), "lucchi_pp", tile=(56, 56), n_items=1, part="train",
                           mean=(0,) * 3, std=(1,) * 3, patch_size=14, plugins=[]) is None
        assert window_store(cfg, torch.nn.Identity(), "vnc", slice_ids=("0",), shape=(56, 56), window=None,
                          mean=(0,) * 3, std=(1,) * 3, patch_size=14, plugins=[]) is None


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Images through any backbone so far (one number, grows)."""
    from emlib.models.backbones import Backbone

    seen, forward = [0], Backbone.forward

    def counting_forward(self, x):
        seen[0] += x.shape[0]
        return forward(self, x)

    monkeypatch.setattr(Backbone, "forward", counting_forward)
    return seen


def test_a_second_frozen_run_of_the_backbone_runs_no_backbone_pass(tiny, tiny_root, counted) -> None:
    shared_data, _ = tiny_root  # small slices: few tiles and windows
    cfg = tiny(regime="frozen", samples_per_epoch=None, train_slices=1, epochs=1, eval_region=None)
    first = fit(cfg, root=shared_data, progress=False)
    trained_passes = counted[0]
    table, _ = evaluate_both(first, root=shared_data)
    assert trained_passes == first.cache_stats["misses"] > 0 and counted[0] > trained_passes  # test windows too
    before = counted[0]
    # another head and learning rate, a feature-level remedy, paired training: the same tokens
    for other in (cfg.replace(head="deconv", lr=1e-3, epochs=2), cfg.replace(train_set="paired", feature_norm=True)):
        if other.train_set == "paired":
            fit(other.replace(train_set="vnc"), root=shared_data, progress=False)  # stores VNC's tiles
            before = counted[0]
        again = fit(other, root=shared_data, progress=False)
        assert again.cache_stats["misses"] == 0 and again.cache_stats["hits"] > 0
        assert list(again.history["backbone_passes"]) == [0] * other.epochs
        if other.train_set != "paired":
            evaluate_both(again, root=shared_data)
        assert counted[0] == before, f"{other.run_id} ran the backbone"
    uncached = fit(cfg.replace(cache="none"), root=shared_data, progress=False)
    assert counted[0] > before and uncached.cache_stats is None
    for a, b in zip(first.model.head.parameters(), uncached.model.head.parameters()):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-3)  # float16 tokens: the same training up to rounding


def test_lora_runs_never_use_the_store(tiny, tiny_root, tmp_path: Path, counted) -> None:
    shared_data, _ = tiny_root
    cfg = tiny(regime="lora", cache="disk", samples_per_epoch=None, train_slices=1, epochs=2, eval_region=None)
    trained = fit(cfg, tmp_path / "runs" / "lora", root=shared_data, progress=False)
    n_items = counted[0]
    assert trained.cache_stats is None and "backbone_passes" not in trained.history
    fit(cfg, tmp_path / "runs" / "lora-again", root=shared_data, progress=False)
    assert counted[0] == 2 * n_items  # the backbone trains: every item, every epoch, every run
    evaluate_both(trained, root=shared_data)
    assert not (tmp_path / "runs" / STORE_FOLDER).exists()


def test_a_damaged_disk_store_is_rebuilt_not_trusted(tiny, tiny_root, tmp_path: Path, counted) -> None:
    from emlib.cache import clear_feature_stores

    shared_data, _ = tiny_root
    cfg = tiny(regime="frozen", cache="disk", samples_per_epoch=None, train_slices=1, epochs=1, eval_region=None)
    first = fit(cfg, tmp_path / "runs" / "a", root=shared_data, progress=False)
    table, _ = evaluate_both(first, root=shared_data)
    files = sorted((tmp_path / "runs" / STORE_FOLDER).glob("*.safetensors"))
    assert len(files) == 3  # the training tiles, the windows of each test set
    clear_feature_stores()  # as a new process: the stores come from disk
    before = counted[0]
    warm = fit(cfg, tmp_path / "runs" / "b", root=shared_data, progress=False)
    evaluate_both(warm, root=shared_data)
    assert counted[0] == before and warm.cache_stats["misses"] == 0
    for path in files:  # a write cut short, by hand or by a full disk of another tool
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    clear_feature_stores()
    with pytest.warns(RuntimeWarning, match=r"feature cache .*\.safetensors cannot be read .*; it is rebuilt"):
        rebuilt = fit(cfg, tmp_path / "runs" / "c", root=shared_data, progress=False)
        again, _ = evaluate_both(rebuilt, root=shared_data)
    assert rebuilt.cache_stats == {"hits": 0, "misses": first.cache_stats["misses"]}
    assert counted[0] > before  # recomputed, not read from the damaged files
    assert again["iou_fg"].tolist() == pytest.approx(table["iou_fg"].tolist(), abs=1e-6)
    clear_feature_stores()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt files are whole again
        fit(cfg, tmp_path / "runs" / "d", root=shared_data, progress=False)


def test_store_groups_follow_what_the_tokens_depend_on() -> None:
    """Runs of one group read each other's stores: the training set, a feature-level remedy and the seed of a
    pretrained run do not split a group; an input remedy, the geometry or random weights' seed do."""
    from emlib.config import grid_configs
    from emlib.featurestore import store_group

    lucchi, paired = grid_configs("quick", regimes=["frozen"], train_sets=["lucchi_pp", "paired"])
    assert store_group(lucchi) == store_group(paired) == store_group(paired.replace(film=True, seed=3))
    for change in ({"input_alignment": "histmatch"}, {"crop": 112}, {"eval_window": 224}, {"backbone": "dinov2_vitb14"}):
        assert store_group(lucchi.replace(**change)) != store_group(lucchi), change
    smoke = grid_configs("smoke", regimes=["frozen"], train_sets=["lucchi_pp"])[0]
    assert store_group(smoke) != store_group(smoke.replace(seed=1))  # random weights: the seed draws them
    assert store_group(lucchi.replace(regime="lora")) is None and store_group(lucchi.replace(cache="none")) is None
