"""Evaluation (emlib.evaluate): every model is tested on both test sets, the cross-dataset rows."""

from __future__ import annotations

from pathlib import Path

from emlib.evaluate import evaluate_both
from emlib.train import fit

from .test_train import tiny


def test_evaluate_both_gives_the_cross_dataset_rows(shared_data: Path) -> None:
    trained = fit(tiny(regime="unet", crop=56, eval_window=56), root=shared_data, progress=False)
    table, raw = evaluate_both(trained, root=shared_data, keep_predictions=True)
    assert list(table.test_set) == ["lucchi_pp", "vnc"]
    assert table.in_domain.tolist() == [True, False]
    assert table.iou_fg.between(0, 1).all()
    assert raw["vnc"].predictions.shape == (1, 56, 56)
