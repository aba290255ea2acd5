"""Training (emlib.train): cached frozen features, resume equals an uninterrupted run, saved models reload.

:func:`tiny` is the few-second run the other test modules train too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emlib.config import RunConfig, get_profile
from emlib.errors import ConfigError
from emlib.train import fit, load_trained


def tiny(**changes) -> RunConfig:
    """The smoke profile's base, shrunk to a run of a few seconds on one CPU core; ``changes`` on top."""
    base = get_profile("smoke").base.replace(
        train_slices=2, samples_per_epoch=4, epochs=2, batch_size=2, crop=28, eval_window=28, eval_region=56,
        eval_slices=1, head_channels=8, unet_channels=4,
    )
    return base.replace(**changes)


def test_frozen_run_caches_features(shared_data: Path) -> None:
    cfg = tiny(regime="frozen", epochs=2, train_slices=1, crop=224, samples_per_epoch=None, batch_size=10)
    trained = fit(cfg, root=shared_data, progress=False)
    n_tiles = 4 * 5  # one 768x1024 slice in 224-pixel tiles, the last row/column flush with the border
    assert trained.cache_stats == {"misses": n_tiles, "hits": n_tiles}
    seconds = trained.history["seconds"].tolist()
    assert seconds[1] < seconds[0] / 2  # the second epoch never runs the backbone
    assert not any(p.requires_grad for p in trained.model.backbone.parameters())


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


def test_augmented_frozen_run_cannot_cache_features() -> None:
    with pytest.raises(ConfigError, match="frozen features cannot be cached"):
        fit(RunConfig(augment=True, pretrained=False))


def test_wrong_crop_is_one_sentence(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match="not a multiple of the patch size 14"):
        fit(tiny(crop=30), root=shared_data, progress=False)


def test_missing_weights_is_one_sentence(shared_data: Path, tmp_path: Path) -> None:
    from emlib.errors import WeightsError

    with pytest.raises(WeightsError, match="nothing.pth"):
        fit(tiny(pretrained=True, weights=str(tmp_path / "nothing.pth")), root=shared_data, progress=False)
