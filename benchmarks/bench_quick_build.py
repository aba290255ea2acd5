"""What the quick profile's book build costs on this machine, measured piece by piece on the local hub.

The online edition is the book built with the ``quick`` profile (pretrained ViT-S/14). Its chapters train
every run of ``grid_configs("quick")``, the published-pairing runs of chapter 5b and the remedy grid of
chapter 8 (``alignment_configs("quick")``, the input-level remedies frozen only), 29 distinct runs
(:func:`emlib.book.shards.book_runs`), and evaluate each on 10 evenly spaced slices of each test set (all
of VNC's 3, 10 of the 165 of Lucchi++; ``eval_slices``). On 2 CPU cores that is hours, so this script measures
the pieces through the real code path instead of the whole (``bench_timed_build.py`` builds the whole):

1. per regime (frozen, LoRA, U-Net), one quick-profile run on Lucchi++ with ``pretrained=True`` read from a
   local hub (:func:`emlib.testing.write_local_hub`: random values in the upstream file formats, hubs
   offline): seconds of ``--epochs`` training epochs (``emlib.train.fit``) and seconds per test slice of its
   evaluation on ``--eval-slices`` slices per dataset (``emlib.evaluation.evaluate_both``);
2. the chapters that train nothing (``--chapters``), built for real with
   ``python -m emlib.book build --profile quick --only ...``;

and adds them up for the whole book: sum over the book's runs of epochs x epoch seconds + test slices x
seconds per slice (the later frozen runs of one feature store at the rates of a warm store), plus
the chapters measured. The total is an ESTIMATE from measured rates; the chapters
that train (03-08) also draw figures and compute latents, which this does not count. Numbers come from
random weights (timings only)::

    EMLIB_DATA=../shared/data python benchmarks/bench_quick_build.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from _common import RESULTS, finish, machine_info, print_header, print_table, write_csv, write_json
from emlib.config import get_profile, grid_configs
from emlib.data.pairing import slice_pairs
from emlib.evaluation import evaluate_both
from emlib.book.shards import book_runs as chapters_runs
from emlib.featurestore import store_group
from emlib.testing import write_local_hub
from emlib.train import fit

REPO = Path(__file__).resolve().parents[1]
TEST_SETS = ("lucchi_pp", "vnc")


def book_runs() -> list:
    """The distinct runs of the quick book: the runs its chapters train (:func:`emlib.book.shards.book_runs`, the
    one list a sharded build splits), with the chapters' default parameters."""
    return chapters_runs(REPO, profile="quick", check_weights=False).configs


def test_slices(cfg) -> int:
    """The test slices a run is evaluated on: ``eval_slices`` of each test set (all when None)."""
    sizes = [len(slice_pairs(name, "test", None)) for name in TEST_SETS]  # 165 and 3 slices ($EMLIB_DATA)
    return sum(min(n, cfg.eval_slices or n) for n in sizes)


def measured_seconds(cfg, rates: dict, *, warm: bool = False) -> float:
    """One run's seconds from the measured rates of its regime: epochs x epoch_s + its test slices x slice_s.

    ``warm``: a frozen run whose feature store an earlier run of the same process filled (the rates of
    ``frozen_warm``: the head's epochs on stored tiles, the test windows read back).
    """
    r = rates["frozen_warm" if warm and cfg.regime == "frozen" and "frozen_warm" in rates else cfg.regime]
    return cfg.epochs * r["epoch_s"] + test_slices(cfg) * r["slice_s"]


def run_estimates(runs: list, rates: dict) -> list[float]:
    """Each run's estimated seconds in the book's order: the first frozen run of a feature store at the cold
    rates, the later ones at the warm rates (a shard keeps a store's runs together, in this order)."""
    seen: set = set()
    out = []
    for cfg in runs:
        group = store_group(cfg)
        out.append(measured_seconds(cfg, rates, warm=group is not None and group in seen))
        seen.add(group)
    return out


def _timed_run(cfg, work: Path) -> tuple[float, float, int, str]:
    t0 = time.perf_counter()
    trained = fit(cfg, work, progress=False)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    table, _ = evaluate_both(trained, progress=False)
    return train_s, time.perf_counter() - t0, int(table.drop_duplicates("test_set")["n_test_slices"].iloc[:2].sum()), \
        str(table["weights_label"].iloc[0])


def measure_regime(regime: str, *, epochs: int, eval_slices: int, work: Path, device: str = "cpu") -> list[dict]:
    """Train one quick run on Lucchi++ for ``epochs`` and evaluate it on ``eval_slices`` slices per test set.

    For ``frozen`` a second row, ``frozen_warm``: the same run with the next seed right after (a pretrained
    backbone's store does not depend on the seed), its feature store already filled, as the later frozen
    runs of one store in a build.
    """
    cfg = grid_configs("quick", regimes=[regime], train_sets=["lucchi_pp"])[0]
    cfg = cfg.replace(epochs=epochs, eval_slices=eval_slices, device=device)
    rows = []
    for name, run in [(regime, cfg)] + ([("frozen_warm", cfg.replace(seed=cfg.seed + 1))] if regime == "frozen" else []):
        train_s, eval_s, n_test, weights = _timed_run(run, work / name)
        rows.append({"regime": name, "epochs": epochs, "epoch_s": train_s / epochs, "eval_slices": n_test,
                     "slice_s": eval_s / n_test, "weights": weights})
    return rows


def build_chapters(chapters: list[str], env: dict[str, str], out: Path) -> float:
    """Seconds of ``emlib book build --profile quick --only CHAPTERS`` in a fresh process."""
    cmd = [sys.executable, "-m", "emlib.book", "build", "--profile", "quick", "--only", *chapters, "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=get_profile("quick").base.epochs,
                    help="training epochs measured per regime (default: the profile's; a cold store fills over them)")
    ap.add_argument("--eval-slices", type=int, default=get_profile("quick").base.eval_slices,
                    help="test slices per dataset evaluated per regime (default: the profile's)")
    ap.add_argument("--chapters", nargs="*", default=["01_data", "02_what_a_foundation_model_sees"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (a GPU machine: the book's time there)")
    ap.add_argument("--out", type=Path, default=RESULTS / "quick_build")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info(torch.device(args.device))
    print_header("quick-profile book build, piece by piece (local hub, random weights)", info)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hub = write_local_hub(work / "hub", backbones=get_profile("quick").family_backbones)
        with hub.activate():
            rows = [row for r in ("frozen", "lora", "unet")
                    for row in measure_regime(r, epochs=args.epochs, eval_slices=args.eval_slices, work=work / "runs",
                                              device=args.device)]
        chapters_s = build_chapters(args.chapters, hub.env, work / "book") if args.chapters else 0.0
    rates = {r["regime"]: r for r in rows}
    runs = book_runs()
    counts = Counter(cfg.regime for cfg in runs)
    total = chapters_s + sum(run_estimates(runs, rates))
    print_table(rows, ["regime", "epochs", "epoch_s", "eval_slices", "slice_s", "weights"])
    summary = {"runs": dict(counts), "chapters_built": args.chapters, "chapters_s": chapters_s,
               "estimate_hours": total / 3600, "what": "estimate from measured rates: sum over the book's runs of "
               "epochs x epoch_s + test slices x slice_s (a feature store's later frozen runs at the warm rates), plus "
               "the chapters built; figures/latents of chapters 03-08 not counted"}
    print(f"book runs: {dict(counts)}; chapters {args.chapters} built in {chapters_s:.0f} s")
    print(f"ESTIMATE of the whole quick book on this machine ({args.device}): {total / 3600:.1f} h")
    write_csv(args.out.with_suffix(".csv"), rows)
    write_json(args.out.with_suffix(".json"), finish({**info, "config": vars(args) | {"out": str(args.out)},
                                                      "summary": summary, "rows": rows}))


if __name__ == "__main__":
    main()
