"""Remedies for paired training: input alignment, per-domain feature modules, CORAL, reweighting, the remedy table."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from emlib import alignment
from emlib.alignment import (
    CoralProbe,
    DomainAwareHead,
    DomainFeatureNorm,
    DomainFiLM,
    align_volume,
    alignment_configs,
    alignment_summary,
    clahe,
    coral_loss,
    domain_weighted_loss,
    foreground_weights,
    grey_cdf,
    histogram_match,
    intensity_reference,
    pixel_scale,
    resample_stack,
    standardise_intensity,
)
from emlib.config import RunConfig, get_profile
from emlib.errors import ConfigError
from emlib.losses import segmentation_loss
from emlib.train import build_train_dataset, fit, load_trained


def tiny(**changes) -> RunConfig:
    base = get_profile("smoke").base.replace(
        train_slices=2, samples_per_epoch=4, epochs=2, batch_size=2, crop=28, eval_window=28, eval_region=56,
        eval_slices=1, head_channels=8, unet_channels=4, train_set="paired",
    )
    return base.replace(**changes)


def _stack(mean: float, std: float, seed: int, shape=(2, 64, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.normal(mean, std, shape)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- input level


def test_histogram_matching_makes_the_cdfs_agree_both_ways() -> None:
    vnc_like, lucchi_like = _stack(120, 50, 0), _stack(140, 25, 1)
    assert np.abs(grey_cdf(vnc_like) - grey_cdf(lucchi_like)).max() > 0.2
    for source, reference in ((vnc_like, lucchi_like), (lucchi_like, vnc_like)):
        matched = histogram_match(source, grey_cdf(reference))
        assert matched.dtype == np.uint8 and matched.shape == source.shape
        assert np.abs(grey_cdf(matched) - grey_cdf(reference)).max() < 0.02
        assert np.array_equal(histogram_match(source, reference), matched)  # a stack works as reference too


def test_standardisation_gives_the_reference_mean_and_std() -> None:
    out = standardise_intensity(_stack(90, 40, 2), mean=137.0, std=30.0)
    assert out.dtype == np.uint8
    assert out.mean() == pytest.approx(137.0, abs=0.5) and out.std() == pytest.approx(30.0, abs=0.5)
    with pytest.raises(ConfigError, match="std=0"):
        standardise_intensity(out, mean=1.0, std=0)


def test_resampling_changes_the_shape_by_the_pixel_size_ratio() -> None:
    assert pixel_scale("vnc", 5.0) == pytest.approx(0.92)
    assert pixel_scale("lucchi_pp", 5.0) == 1.0
    images, masks = _stack(128, 30, 3, (2, 100, 50)), np.zeros((2, 100, 50), bool)
    masks[:, 40:60, 10:30] = True
    assert resample_stack(images, 0.92).shape == (2, 92, 46)
    ref = intensity_reference(images, dataset="lucchi_pp", pixel_size_nm=5.0)
    out, out_masks = align_volume(images, "vnc", "resample", ref, masks=masks)
    assert out.shape == out_masks.shape == (2, 92, 46) and out_masks.dtype == bool
    assert out_masks.mean() == pytest.approx(masks.mean(), abs=0.01)
    same, same_masks = align_volume(images, "lucchi_pp", "resample", ref, masks=masks)
    assert same is images and same_masks is masks


def test_clahe_and_its_missing_dependency(monkeypatch) -> None:
    images = _stack(128, 10, 4, (1, 64, 64))
    monkeypatch.setitem(sys.modules, "skimage.exposure", None)
    with pytest.raises(ConfigError, match="pip install scikit-image"):
        clahe(images)
    monkeypatch.undo()
    pytest.importorskip("skimage")
    out = clahe(images)
    assert out.dtype == np.uint8 and out.shape == images.shape and out.std() > images.std()


def test_align_volume_rejects_unknown_methods() -> None:
    with pytest.raises(ConfigError, match="input_alignment='gamma'"):
        align_volume(_stack(1, 1, 0), "vnc", "gamma", None)
    with pytest.raises(ConfigError, match="needs reference statistics"):
        align_volume(_stack(1, 1, 0), "vnc", "histmatch", None)


def test_training_items_see_the_aligned_pixels(shared_data: Path) -> None:
    from emlib.data import IMAGENET_MEAN, IMAGENET_STD

    plain = build_train_dataset(tiny(), 14, IMAGENET_MEAN, IMAGENET_STD, root=shared_data)
    matched = build_train_dataset(tiny(input_alignment="histmatch"), 14, IMAGENET_MEAN, IMAGENET_STD, root=shared_data)
    lucchi, vnc = plain.sources
    assert np.array_equal(matched.sources[0].images, lucchi.images)  # the reference maps onto itself
    ref = alignment.reference_for(tiny(), shared_data)
    assert np.abs(grey_cdf(matched.sources[1].images) - ref.cdf).max() < 0.02
    assert np.abs(grey_cdf(vnc.images) - ref.cdf).max() > 0.05
    assert [plain[i]["domain"] for i in (0, len(plain) - 1)] == [0, 1]


# ----------------------------------------------------------------------------- feature level


def test_coral_loss_is_zero_for_equal_covariances_positive_otherwise_and_differentiable() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    assert coral_loss(x, x + 3.0).item() == pytest.approx(0.0, abs=1e-7)
    y = (x * torch.tensor([1.0, 2.0, 1.0, 1.0, 0.5])).requires_grad_()
    loss = coral_loss(x, y)
    ca, cb = torch.cov(x.T), torch.cov(y.detach().T)
    assert loss.item() == pytest.approx(float(((ca - cb) ** 2).sum() / (4 * 25)), rel=1e-5)
    loss.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    maps = torch.randn(2, 5, 3, 3)  # feature maps are read as patch vectors
    assert coral_loss(maps, maps).item() == 0.0


def test_domain_feature_norm_keeps_separate_statistics_per_domain() -> None:
    norm = DomainFeatureNorm(2, 3, momentum=1.0)
    x0 = torch.randn(4, 3, 5, 5) * 4 + 10
    out = norm(x0, 0)
    assert out.mean().abs() < 1e-5 and out.std() == pytest.approx(1.0, abs=0.05)
    assert torch.allclose(norm.running_mean[0], x0.mean((0, 2, 3)), atol=1e-4)
    assert torch.equal(norm.running_mean[1], torch.zeros(3)) and torch.equal(norm.running_var[1], torch.ones(3))
    assert norm.num_batches_tracked.tolist() == [1, 0]
    norm.eval()
    shifted = norm(x0[:1] + 1.0, 0)  # evaluation uses domain 0's running statistics
    assert shifted.mean() > 0.1
    unseen = norm(x0[:1] * 3 - 7, 1)  # a domain never trained on: its own statistics (AdaBN)
    assert unseen.mean().abs() < 1e-4
    norm.train()
    mixed = norm(torch.cat([x0[:2], -x0[:2]]), torch.tensor([0, 0, 1, 1]))
    assert mixed[:2].mean().abs() < 1e-4 and mixed[2:].mean().abs() < 1e-4


def test_film_is_per_domain() -> None:
    film = DomainFiLM(2, 3)
    x = torch.randn(3, 3, 2, 2)
    with torch.no_grad():
        film.gamma[1] = 2.0
        film.beta[1] = 1.0
    out = film(x, torch.tensor([0, 1, 0]))
    assert torch.equal(out[0], x[0]) and torch.equal(out[2], x[2])
    assert torch.allclose(out[1], 2 * x[1] + 1)
    out.sum().backward()
    assert film.gamma.grad[0].abs().sum() > 0 and film.beta.grad[1].abs().sum() > 0


class _Const(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, features: torch.Tensor, out_size) -> torch.Tensor:
        return torch.full((features.shape[0], 2, *out_size), self.value)


def test_per_domain_heads_route_by_domain() -> None:
    head = DomainAwareHead([_Const(0.0), _Const(1.0)], num_domains=2, channels=4)
    logits = head(torch.randn(3, 4, 2, 2), (6, 6), torch.tensor([1, 0, 1]))
    assert logits.shape == (3, 2, 6, 6)
    assert logits[:, 0, 0, 0].tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ConfigError, match="domain ids must lie in 0..1"):
        head(torch.randn(1, 4, 2, 2), (6, 6), 2)


def test_foreground_reweighting_weights() -> None:
    w = foreground_weights([0.1, 0.05])
    assert w.tolist() == pytest.approx([2 / 3, 4 / 3]) and w.mean() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="foreground fractions"):
        foreground_weights([0.2, 0.0])
    torch.manual_seed(0)
    logits, target = torch.randn(4, 2, 8, 8), (torch.rand(4, 8, 8) > 0.7).long()
    one_domain = torch.zeros(4, dtype=torch.long)
    assert domain_weighted_loss(logits, target, one_domain, [1.0, 1.0]).item() == pytest.approx(
        segmentation_loss(logits, target).item()
    )
    d = torch.tensor([0, 0, 1, 1])
    parts = [segmentation_loss(logits[d == k], target[d == k]).item() for k in (0, 1)]
    assert domain_weighted_loss(logits, target, d, w).item() == pytest.approx(0.5 * (w[0] * parts[0] + w[1] * parts[1]))


# ----------------------------------------------------------------------------- config and fit


def test_new_options_leave_old_digests_alone_and_check_combinations() -> None:
    assert RunConfig().digest() == "5166def52dfa8569e7205f65cdbddcdb9e428dbb5a5e007a0d36b65cd0eb7100"
    cfg = RunConfig(train_set="paired", film=True, input_alignment="clahe")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg and cfg.digest() != RunConfig(train_set="paired").digest()
    with pytest.raises(ConfigError, match="input_alignment='gamma'"):
        RunConfig(input_alignment="gamma")
    with pytest.raises(ConfigError, match="set train_set='paired'"):
        RunConfig(heads_per_domain=True)
    with pytest.raises(ConfigError, match="unet regime"):
        RunConfig(regime="unet", train_set="paired", feature_norm=True)
    with pytest.raises(ConfigError, match="cannot be combined"):
        RunConfig(train_set="paired", coral_weight=1.0, heads_per_domain=True)


@pytest.mark.parametrize(
    "option",
    [
        {"input_alignment": "standardise"},
        {"input_alignment": "histmatch", "alignment_reference": "vnc"},
        {"input_alignment": "clahe"},
        {"input_alignment": "resample"},
        {"film": True},
        {"coral_weight": 1.0},
        {"heads_per_domain": True, "regime": "lora"},
        {"fg_reweight": True},
        {"balance": True},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_tiny_paired_fit_per_option(shared_data: Path, option: dict) -> None:
    if option.get("input_alignment") == "clahe":
        pytest.importorskip("skimage")
    trained = fit(tiny(**option), root=shared_data, progress=False)
    assert len(trained.history) == 2 and np.isfinite(trained.history["loss"]).all()
    if option.get("heads_per_domain"):
        heads = trained.model.head.heads
        assert len(heads) == 2 and not torch.equal(heads[0].classifier.weight, heads[1].classifier.weight)


def test_coral_probe_sees_the_head_stem(shared_data: Path) -> None:
    from emlib.train import build_model

    model, *_ = build_model(tiny(coral_weight=1.0))
    probe = CoralProbe(model)
    model.head(torch.randn(4, 384, 2, 2), (28, 28))
    assert probe.features.shape == (4, 8, 2, 2)  # head_channels of the stem
    assert probe.loss(torch.tensor([0, 0, 0, 0])).item() == 0.0  # one domain only: nothing to align
    assert probe.loss(torch.tensor([0, 0, 1, 1])).item() > 0
    probe.remove()


def test_feature_norm_run_saves_statistics_and_tests_with_the_test_domain(shared_data: Path, tmp_path: Path) -> None:
    from emlib.evaluate import evaluate

    trained = fit(tiny(feature_norm=True, input_alignment="resample"), tmp_path / "run", root=shared_data, progress=False)
    norm = trained.model.head.norm
    assert norm.num_batches_tracked.tolist()[0] > 0 and norm.num_batches_tracked.tolist()[1] > 0
    again = load_trained(tmp_path / "run")
    assert torch.equal(again.model.head.norm.running_mean, norm.running_mean)
    with pytest.raises(ConfigError, match="domain=d"):
        trained.model(torch.zeros(1, 3, 28, 28))
    res = evaluate(trained, "vnc", root=shared_data, keep_predictions=True)
    assert 0 <= res.scores["iou_fg"] <= 1 and res.predictions.shape == (1, 56, 56)


# ----------------------------------------------------------------------------- remedy table


def test_alignment_configs_and_summary() -> None:
    pairs = alignment_configs("smoke", regimes=("frozen",), remedies=["CORAL", "fg reweighting"])
    assert [name for name, _ in pairs] == ["paired baseline", "CORAL", "fg reweighting", "lucchi_pp only", "vnc only"]
    assert pairs[1][1].coral_weight > 0 and pairs[3][1].train_set == "lucchi_pp"
    with pytest.raises(ConfigError, match="unknown remedies"):
        alignment_configs("smoke", remedies=["magic"])
    rows = []
    for remedy, train_set, scores in [
        ("paired baseline", "paired", (0.2, 0.1)),
        ("CORAL", "paired", (0.5, 0.4)),
        ("lucchi_pp only", "lucchi_pp", (0.8, 0.3)),
        ("vnc only", "vnc", (0.2, 0.6)),
    ]:
        for test_set, iou in zip(("lucchi_pp", "vnc"), scores):
            rows.append({"remedy": remedy, "regime": "frozen", "train_set": train_set, "test_set": test_set,
                         "in_domain": train_set in (test_set, "paired"), "iou_fg": iou, "weights_label": "random weights"})
    table = alignment_summary(pd.DataFrame(rows)).set_index("remedy")
    assert table.loc["CORAL", "in_domain_iou_fg"] == pytest.approx(0.45)
    assert np.isnan(table.loc["CORAL", "cross_domain_iou_fg"])
    assert table.loc["lucchi_pp only", "cross_domain_iou_fg"] == pytest.approx(0.3)
    assert table.loc["CORAL", "gap_closed"] == pytest.approx((0.45 - 0.15) / (0.7 - 0.15))
    assert table.loc["paired baseline", "gap_closed"] == pytest.approx(0.0)
    assert table.kind.tolist() == ["baseline", "remedy", "reference", "reference"]


def test_remedy_plot_has_one_bar_per_test_set_and_regime() -> None:
    from emlib.viz import plot_remedy_table

    summary = pd.DataFrame({
        "regime": ["frozen", "frozen", "lora"], "remedy": ["paired baseline", "vnc only", "paired baseline"],
        "kind": ["baseline", "reference", "baseline"], "iou_fg_lucchi_pp": [0.1, 0.2, 0.3],
        "iou_fg_vnc": [0.4, 0.5, 0.6], "weights_label": "random weights",
    })
    fig = plot_remedy_table(summary)
    assert len(fig.data) == 4 and "(random weights)" in fig.layout.title.text
    assert "vnc only (reference)" in fig.data[0].y


TINY_GRID = dict(
    train_slices=2, samples_per_epoch=4, epochs=1, batch_size=2, crop=28, eval_window=28, eval_region=56,
    eval_slices=1, head_channels=8, unet_channels=4,
)


def test_remedy_latents_add_fd_probe_and_latent_space(shared_data: Path, tmp_path: Path) -> None:
    remedies = ["histmatch to Lucchi++", "FiLM per domain"]
    results = alignment.run_alignment_grid("smoke", tmp_path, regimes=("frozen", "lora"), remedies=remedies,
                                           references=False, root=shared_data, progress=False, **TINY_GRID)
    latents = alignment.remedy_latents(results, tmp_path, profile="smoke", root=shared_data)
    assert len(latents) == 6 and (tmp_path / "alignment_latents.csv").is_file()
    assert any((tmp_path / "embeddings").glob("emb-*.npz"))
    summary = alignment_summary(results, latents=latents)
    assert {"fd", "probe_auroc", "latent_space", "weights_label", "gap_closed"} <= set(summary.columns)
    assert np.isfinite(summary.fd).all() and summary.probe_auroc.between(0, 1).all()
    assert (summary.weights_label == "random weights").all()
    table = summary.set_index(["regime", "remedy"])
    # input alignment changes what the frozen backbone sees, so the distance moves
    assert table.loc[("frozen", "histmatch to Lucchi++"), "fd"] != pytest.approx(table.loc[("frozen", "paired baseline"), "fd"])
    assert "histmatch-aligned" in table.loc[("frozen", "histmatch to Lucchi++"), "latent_space"]
    # FiLM acts after a frozen backbone: same embeddings, same distance, and the row says so
    assert table.loc[("frozen", "FiLM per domain"), "fd"] == pytest.approx(table.loc[("frozen", "paired baseline"), "fd"])
    assert "not measured" in table.loc[("frozen", "FiLM per domain"), "latent_space"]
    assert table.loc[("lora", "paired baseline"), "latent_space"].startswith("LoRA backbone")
    again = alignment.remedy_latents(results, tmp_path, profile="smoke", root=shared_data)  # from the cache
    assert np.allclose(again.fd, latents.fd) and np.allclose(again.probe_auroc, latents.probe_auroc)


def test_summary_rejects_latents_without_the_columns() -> None:
    rows = pd.DataFrame([{"remedy": "paired baseline", "regime": "frozen", "train_set": "paired", "test_set": t,
                          "in_domain": True, "iou_fg": 0.1} for t in ("lucchi_pp", "vnc")])
    with pytest.raises(ConfigError, match="remedy_latents"):
        alignment_summary(rows, latents=pd.DataFrame({"regime": ["frozen"], "remedy": ["paired baseline"]}))
    lat = pd.DataFrame({"regime": ["frozen"] * 2, "remedy": ["paired baseline"] * 2, "fd": [1.0, 3.0],
                        "probe_auroc": [0.5, 0.7], "latent_space": ["frozen backbone embeddings"] * 2})
    table = alignment_summary(rows, latents=lat)  # seeds are averaged
    assert table.fd.tolist() == [2.0] and table.probe_auroc.tolist() == [pytest.approx(0.6)]
