"""Training (emlib.train): cached frozen features, resume equals an uninterrupted run, saved models reload.

The ``tiny`` fixture (tests/conftest.py) is the few-second run the other test modules train too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emlib.config import RunConfig, get_profile
from emlib.errors import ConfigError
from emlib.runfiles import CHECKPOINT, load_state
from emlib.evaluation import evaluate_both, scored_rows
from emlib.train import build_train_dataset, fit, load_trained


def test_frozen_run_caches_features(tiny, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from emlib.models.backbones import Backbone

    seen, per_epoch = [0], []  # images through the backbone: so far, and at each epoch's end
    forward = Backbone.forward

    def counting_forward(self, x):
        seen[0] += x.shape[0]
        return forward(self, x)

    monkeypatch.setattr(Backbone, "forward", counting_forward)
    cfg = tiny(regime="frozen", epochs=2, train_slices=1, crop=224, samples_per_epoch=None, batch_size=10)
    trained = fit(cfg, root=shared_data, progress=False, on_epoch_end=lambda epoch, loss: per_epoch.append(seen[0]))
    n_tiles = 4 * 5  # one 768x1024 slice in 224-pixel tiles, the last row/column flush with the border
    assert trained.cache_stats == {"misses": n_tiles, "hits": n_tiles}
    assert per_epoch == [n_tiles, n_tiles]  # each tile through the backbone once; the second epoch never runs it
    assert not any(p.requires_grad for p in trained.model.backbone.parameters())


WHOLE_SLICES = {"crop": None, "long_edge": 56, "eval_window": None}  # one item per slice: a quick validation set


@pytest.mark.parametrize(
    "schedule", [{}, {"train_slices": 4, "val_fraction": 0.25, "patience": 1, **WHOLE_SLICES}], ids=["fixed", "early-stopping"]
)
def test_resume_after_interruption_equals_uninterrupted(tiny, shared_data: Path, tmp_path: Path, schedule: dict) -> None:
    cfg = tiny(regime="lora", epochs=3, **schedule)
    straight = fit(cfg, tmp_path / "a", root=shared_data, progress=False)

    class Stop(Exception):
        pass

    def stop_after_first(epoch: int, loss: float) -> None:
        if epoch == 0:
            raise Stop

    with pytest.raises(Stop):
        fit(cfg, tmp_path / "b", root=shared_data, progress=False, on_epoch_end=stop_after_first)
    assert load_state(tmp_path / "b" / CHECKPOINT, fix="", tensors=False)["epoch"] == 0
    resumed = fit(cfg, tmp_path / "b", root=shared_data, progress=False)
    assert len(resumed.history) == len(straight.history) and resumed.best_epoch == straight.best_epoch
    a = {k: v for k, v in straight.model.state_dict().items()}
    b = resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_allclose(straight.history["loss"], resumed.history["loss"])


def test_load_trained_reproduces_predictions(tiny, shared_data: Path, tmp_path: Path) -> None:
    trained = fit(tiny(regime="lora"), tmp_path / "run", root=shared_data, progress=False)
    again = load_trained(tmp_path / "run")
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(trained.model(x), again.model(x))


def test_augmented_frozen_run_cannot_cache_features() -> None:
    with pytest.raises(ConfigError, match="frozen features cannot be cached"):
        fit(RunConfig(augment=True, pretrained=False))


def test_wrong_crop_is_one_sentence(tiny, shared_data: Path) -> None:
    with pytest.raises(ConfigError, match="not a multiple of the patch size 14"):
        fit(tiny(crop=30), root=shared_data, progress=False)


def test_missing_weights_is_one_sentence(tiny, shared_data: Path, tmp_path: Path) -> None:
    from emlib.errors import WeightsError

    with pytest.raises(WeightsError, match="nothing.pth"):
        fit(tiny(pretrained=True, weights=str(tmp_path / "nothing.pth")), root=shared_data, progress=False)


@pytest.mark.parametrize("regime", ["frozen", "lora", "unet"])
@pytest.mark.parametrize("train_set", ["lucchi_pp", "paired"])
def test_every_regime_beats_the_constant_predictors_on_an_obvious_task(disk_root, regime: str, train_set: str) -> None:
    # The smoke profile's settings on bright disks: a regime that collapses to one class (or learns
    # nothing) scores at most the foreground fraction (all foreground) or 0 (all background).
    root, fg_fraction = disk_root
    cfg = get_profile("smoke").base.replace(
        regime=regime, train_set=train_set, train_slices=None, eval_region=None, eval_slices=None
    )
    trained = fit(cfg, root=root, progress=False)
    table, _ = evaluate_both(trained, root=root)
    for row in scored_rows(table).itertuples():  # each test set alone, true labels
        assert not row.degenerate, f"{regime} on {train_set} predicts one class on {row.test_set}"
        assert row.iou_fg > fg_fraction + 0.2, f"{regime} on {train_set} -> {row.test_set}: IoU_fg {row.iou_fg:.3f}"


def small_paper(**changes) -> RunConfig:
    """The paper profile's protocol at small size: whole slices resized to a 112-px long side, 2 slices per
    dataset, 2 epochs, random ViT-S/14 weights (the authors' schedule, validation split and padding)."""
    base = get_profile("paper").base.replace(
        backbone="dinov2_vits14", pretrained=False, long_edge=112, train_slices=2, epochs=2, eval_slices=2,
        device="cpu", cache="memory",
    )
    return base.replace(**changes)


@pytest.mark.parametrize("regime", ["frozen", "lora"])
def test_paper_profile_paired_run_on_whole_slices(shared_data: Path, tmp_path: Path, regime: str) -> None:
    # Lucchi++ (84x112) and VNC (112x112) slices in one batch of 2: padded, padding out of the loss
    cfg = small_paper(regime=regime, train_set="paired", batch_size=2)
    trained = fit(cfg, tmp_path / "run", root=shared_data, progress=False)
    passes = ["backbone_passes"] if regime == "frozen" else []  # frozen runs count the training items the backbone computed
    assert list(trained.history.columns) == ["epoch", "loss", "seconds", *passes, "val_loss"]
    assert np.isfinite(trained.history[["loss", "val_loss"]].to_numpy()).all()
    assert trained.best_epoch == int(trained.history["val_loss"].idxmin())
    table, results = evaluate_both(trained, root=shared_data)
    assert set(scored_rows(table).test_set) == {"lucchi_pp", "vnc"} and table.iou_fg.between(0, 1).all()
    assert results["lucchi_pp"].n_slices == 2


def test_whole_slice_evaluation_calls_the_model_once_per_slice(shared_data: Path) -> None:
    from emlib.evaluation import evaluate

    cfg = small_paper(regime="frozen", train_set="vnc", epochs=1, val_fraction=0.0, patience=None)
    trained = fit(cfg, root=shared_data, progress=False)
    calls = []
    backbone = trained.model.backbone
    forward = backbone.forward
    backbone.forward = lambda x: calls.append(tuple(x.shape)) or forward(x)
    result = evaluate(trained, "lucchi_pp", root=shared_data)
    assert calls == [(1, 3, 84, 112)] * result.n_slices  # 768x1024 resized to a 112 long side, floored to 14
    again = evaluate(trained, "lucchi_pp", root=shared_data)  # the test slices' tokens come from the store
    assert len(calls) == result.n_slices and again.scores == result.scores
    uncached = fit(cfg.replace(cache="none"), root=shared_data, progress=False)
    model_calls = []
    model_forward = uncached.model.forward
    uncached.model.forward = lambda x, **kw: model_calls.append(tuple(x.shape)) or model_forward(x, **kw)
    assert evaluate(uncached, "lucchi_pp", root=shared_data).scores == pytest.approx(result.scores, rel=1e-2)
    assert model_calls == [(1, 3, 84, 112)] * result.n_slices  # without a store: backbone and head, one pass


def test_early_stopping_keeps_the_best_validation_epoch(tiny, shared_data: Path, tmp_path: Path) -> None:
    from emlib.train import _val_loss, build_train_dataset
    from emlib.plugins import plugins_for

    cfg = tiny(regime="frozen", train_slices=4, val_fraction=0.25, patience=1, epochs=8, lr=0.5, **WHOLE_SLICES)
    trained = fit(cfg, tmp_path / "run", root=shared_data, progress=False)
    history = trained.history
    best = int(history["val_loss"].idxmin())
    assert trained.best_epoch == best
    assert len(history) == 8 or len(history) - 1 - best == 1  # stopped one epoch after the best one
    val_set = build_train_dataset(cfg, patch_size=trained.patch_size, mean=trained.mean, std=trained.std, root=shared_data, part="val")
    again = _val_loss(cfg, trained.model, val_set, cache=None, plugins=plugins_for(cfg), device=torch.device("cpu"))
    # the returned model is the best epoch's (fit computed its val loss from float16-cached features)
    assert again == pytest.approx(history["val_loss"].min(), rel=1e-4)


def test_validation_split_is_seeded_and_disjoint(tiny, shared_data: Path) -> None:
    cfg = tiny(regime="frozen", train_slices=4, val_fraction=0.25, crop=None, long_edge=56)
    train = build(cfg, shared_data, "train")
    val = build(cfg, shared_data, "val")
    assert (len(train), len(val)) == (3, 1)
    assert not any(torch.equal(val[0]["image"], train[i]["image"]) for i in range(len(train)))
    assert torch.equal(build(cfg, shared_data, "val")[0]["image"], val[0]["image"])  # seeded: the same slice again


def build(cfg: RunConfig, root: Path, part: str):
    from emlib.train import build_model, build_train_dataset

    built = build_model(cfg)
    return build_train_dataset(cfg, patch_size=built.patch_size, mean=built.mean, std=built.std, root=root, part=part)


def test_a_published_pairing_run_trains_on_the_labels_the_authors_script_gives(tiny, tiny_root) -> None:
    root, truth = tiny_root
    cfg = tiny(train_set="paired", pairing="published", train_slices=None, crop=None, long_edge=64)
    lucchi, vnc = build_train_dataset(cfg, patch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3, root=root).sources
    order = [0, 1, 10, 11, *range(2, 10)]  # make_lucchi's 12 labels in sorted file-name order
    given = truth["lucchi_pp"]["train_masks"][order]
    assert lucchi.masks.shape[0] == 12 and (lucchi.masks > 0).sum() == given.sum()
    correct = build_train_dataset(cfg.replace(pairing="correct"), patch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3,
                                  root=root).sources
    np.testing.assert_array_equal(lucchi.images, correct[0].images)  # the same images, other labels
    assert not np.array_equal(lucchi.masks, correct[0].masks)
    np.testing.assert_array_equal(vnc.masks, correct[1].masks)  # VNC is paired by stem either way


def _diverging_loss(monkeypatch: pytest.MonkeyPatch, at_call: int) -> None:
    """Make the training loss NaN from its ``at_call``-th batch on (0-based), as a learning rate too high for a run does."""
    import emlib.train as train_mod

    real, calls = train_mod.plugin_loss, [0]

    def loss(*args, **kwargs):
        value = real(*args, **kwargs)
        calls[0] += 1
        return value * float("nan") if calls[0] > at_call else value

    monkeypatch.setattr(train_mod, "plugin_loss", loss)


def test_a_loss_that_is_not_finite_stops_the_run_as_failed_never_done(tiny, tiny_root, tmp_path, monkeypatch) -> None:
    """Issue 23, item 10: a NaN loss ends the run in one sentence naming the epoch and step and the fix; the run folder
    then holds ``error.log`` (``emlib grid --status``: failed) and neither a model nor metrics, and the checkpoint of the
    last finite epoch is kept."""
    from emlib.runfiles import ERROR_LOG, METRICS, MODEL
    from emlib.stopping import TrainingDiverged

    root, _ = tiny_root
    cfg = tiny(regime="unet", crop=56, eval_window=56, train_set="vnc")  # 2 tiles: one batch per epoch
    _diverging_loss(monkeypatch, at_call=1)  # epoch 2, step 1
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as info:
        fit(cfg, run, root=root, progress=False)
    message = (f"training diverged: the loss of run {cfg.run_id} became nan at epoch 2, step 1 (lr={cfg.lr:g}), so the run "
               "stopped and is marked failed, not done; lower the learning rate (lr, and lora_lr for LoRA; e.g. a tenth "
               "of it) and run again")
    assert str(info.value) == message and isinstance(info.value, ConfigError)
    assert (run / ERROR_LOG).read_text() == message + "\n"
    assert not (run / MODEL).exists() and not (run / METRICS).exists()
    assert load_state(run / CHECKPOINT, fix="", tensors=False)["epoch"] == 0  # the finite first epoch stays


def test_grid_on_a_diverging_run_exits_2_and_lists_it_failed(tiny, tiny_root, tmp_path, monkeypatch, capsys) -> None:
    """Through ``emlib grid``: exit status 2 and the sentence alone, no results table, no done marker, status failed."""
    import emlib.config as config
    from emlib.cli import main
    from emlib.runfiles import METRICS

    root, _ = tiny_root
    prof = config.Profile(name="t", description="test", base=tiny(regime="unet", crop=56, eval_window=56),
                          backbones=("dinov2_vits14",), regimes=("unet",), train_sets=("vnc",))
    monkeypatch.setitem(config.PROFILES, "t", prof)
    _diverging_loss(monkeypatch, at_call=0)
    out = tmp_path / "runs"
    argv = ["grid", "--profile", "t", "--out", str(out), "--root", str(root), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("emlib: error: training diverged: the loss of run vnc-unet-unet-s0-") and err.count("\n") == 1
    assert "became nan at epoch 1, step 1" in err and "lower the learning rate" in err
    assert not list(out.glob(f"*/{METRICS}")) and not (out / "results.csv").exists() and not (out / "results.json").exists()
    assert main([*argv, "--status"]) == 0
    assert "1 failed" in capsys.readouterr().out
