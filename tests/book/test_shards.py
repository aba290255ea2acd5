"""Tests of emlib.book.shards: the split into shares, the refusals, and 2 shards + a merge that equal one build."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from emlib.book.commands import main
from emlib.book.shards import (SHARD_MANIFEST, book_runs, merge_shards, parse_shard, read_shards, run_seconds,
                               split_shares)
from emlib.book.toc import BookError
from emlib.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
#: Two chapters whose four runs (frozen and LoRA on each dataset) two shards share: chapter 4 reads back
#: chapter 3's frozen runs, so a run two chapters need is made once.
CHAPTERS = ["03_frozen_backbone", "04_lora"]
#: Columns of a results row that say how long a run took where, not what it computed.
TIMING_COLUMNS = ("train_seconds", "eval_seconds", "peak_memory_mb")


def test_split_puts_every_run_in_exactly_one_share_balanced_and_the_same_each_time() -> None:
    rng = random.Random(0)
    for _ in range(50):
        costs = [rng.choice([rng.uniform(1, 100), 5.0, 5.0]) for _ in range(rng.randint(0, 40))]
        n = rng.randint(1, 9)
        shares = split_shares(costs, n)
        assert len(shares) == n and sorted(k for s in shares for k in s) == list(range(len(costs)))
        assert split_shares(costs, n) == shares and all(s == sorted(s) for s in shares)
        loads = [sum(costs[k] for k in s) for s in shares]
        if costs:  # the greedy bound: no share exceeds the mean load by more than the longest run
            assert max(loads) <= sum(costs) / n + max(costs) + 1e-9
    # the longest run first, each to the share with the least cost so far: [9] [7, 1] [6, 3]
    assert split_shares([1, 9, 6, 7, 3], 3) == [[1], [0, 3], [2, 4]]
    assert split_shares([2, 2, 2, 2], 2) == [[0, 2], [1, 3]]  # ties: the earlier run, the lower share


@pytest.mark.parametrize(("text", "words"), [
    ("3/2", "I is 3, more than the 2 shards"), ("0/4", "I is 0, shards count from 1"),
    ("1/0", "N is 0"), ("a/2", "is not I/N"), ("2", "is not I/N"), ("-1/2", "is not I/N"), ("1.5/2", "is not I/N"),
])
def test_a_bad_shard_is_one_sentence(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_shard(text)
    assert words in str(info.value) and "\n" not in str(info.value) and "--shard" in str(info.value)


def test_the_cli_refuses_a_bad_shard_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["build", "--root", str(REPO), "--shard", "3/2", "--out", str(out), "-p", "seed=notanint"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emlib.book: error: --shard 3/2: I is 3") and err.count("\n") == 1
    assert main(["build", "--root", str(REPO), "--shard", "1/2", "--check", "--out", str(out)]) == 2
    assert "--shard builds no page, so --check has nothing to do" in capsys.readouterr().err
    assert main(["build", "--root", str(REPO), "--shard", "1/2", "--only", "99_nope", "--out", str(out)]) == 2
    assert "--only names ['99_nope']" in capsys.readouterr().err
    assert not out.exists()


def test_costs_come_from_the_plan_and_an_unmeasured_run_counts_as_the_mean(shared_data: Path) -> None:
    book = book_runs(REPO, profile="smoke", only=["05_paired_training"], parameters={"data_dir": str(shared_data)})
    seconds = run_seconds(book.configs, root=book.data_dir)
    regimes = [cfg.regime for cfg in book.configs]
    measured = [s for s, r in zip(seconds, regimes) if r != "unet"]  # costs.csv measures no U-Net
    assert len(seconds) == len(book.configs) == 9 and all(s > 0 for s in seconds)
    assert all(s == pytest.approx(sum(measured) / len(measured)) for s, r in zip(seconds, regimes) if r == "unet")
    empty = pd.DataFrame(columns=["backbone", "regime", "batch_size", "input_size", "device", "images_per_s",
                                  "peak_memory_mb", "measured_on"])
    assert run_seconds(book.configs, root=book.data_dir, costs=empty) == [1.0] * 9  # nothing measured: balance the count


def test_the_book_runs_follow_the_chapters_and_their_parameters(shared_data: Path, tmp_path: Path) -> None:
    book = book_runs(REPO, profile="smoke", only=CHAPTERS, out=tmp_path / "o", parameters={"seed": 3})
    assert [c.run_id[:-9] for c in book.configs] == [
        "lucchi_pp-frozen-dinov2_vits14-s3", "vnc-frozen-dinov2_vits14-s3", "lucchi_pp-lora-dinov2_vits14-s3",
        "vnc-lora-dinov2_vits14-s3"]
    assert book.runs_dir == (tmp_path / "o" / "runs").resolve() and book.grid == book.runs_dir / "smoke"
    remedies = book_runs(REPO, profile="smoke", only=["08_beyond_the_paper"], parameters={"regimes": ["lora"], "seed": 3})
    assert {c.regime for c in remedies.configs} == {"lora"} and {c.seed for c in remedies.configs} == {0}  # as chapter 8 runs them
    assert book_runs(REPO, only=["01_data"]).configs == []  # a chapter that trains nothing


def _manifest(folder: Path, book, shard: int, shards: int, runs: list[str], **changes) -> Path:
    path = folder / SHARD_MANIFEST.format(shard=shard, shards=shards)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"shard": shard, "shards": shards, **book.identity(), "grid": "smoke", "runs": runs,
                                **changes}))
    return path


def test_merge_refuses_shards_that_disagree_or_leave_runs_out_before_copying(shared_data: Path, tmp_path: Path) -> None:
    book = book_runs(REPO, profile="smoke", only=CHAPTERS)
    names = list(book.folders())
    one, two = tmp_path / "one", tmp_path / "two"
    _manifest(one, book, 1, 2, names[:2])
    cases = [
        ([one], "shard 2/2 is missing from --merge"),
        ([one, tmp_path / "nope"], "--merge " + str(tmp_path / "nope") + ": no such folder"),
        ([one, tmp_path], f"--merge {tmp_path} holds no shard manifest"),
    ]
    (tmp_path / "empty").mkdir()
    for dirs, words in cases:
        with pytest.raises(BookError) as info:
            merge_shards(dirs, REPO, profile="smoke", only=CHAPTERS, out=tmp_path / "book")
        assert words in str(info.value) and "\n" not in str(info.value), str(info.value)
    for changes, words in [({"commit": "0000000"}, "was built with commit '0000000', this merge with"),
                           ({"profile": "quick"}, "was built with profile 'quick'"),
                           ({"parameters": {"seed": 1}}, "was built with parameters {'seed': 1}"),
                           ({"chapters": CHAPTERS[:1]}, "was built with chapters")]:
        _manifest(two, book, 2, 2, names[2:], **changes)
        with pytest.raises(BookError, match="^the shard in .* " + words.replace("(", r"\(")):
            merge_shards([one, two], REPO, profile="smoke", only=CHAPTERS, out=tmp_path / "book")
    _manifest(two, book, 2, 2, names[2:3])
    with pytest.raises(BookError, match=f"the shards hold 3 of the book's 4 runs, not {names[3]}; build the shards"):
        merge_shards([one, two], REPO, profile="smoke", only=CHAPTERS, out=tmp_path / "book")
    _manifest(two, book, 2, 2, [*names[2:], "vnc-lora-x"])
    with pytest.raises(BookError, match="hold run vnc-lora-x, which this build does not train"):
        merge_shards([one, two], REPO, profile="smoke", only=CHAPTERS, out=tmp_path / "book")
    _manifest(two, book, 2, 2, names[2:])
    with pytest.raises(BookError, match=r"holds no finished run \(metrics.json\); build that shard again"):
        merge_shards([one, two], REPO, profile="smoke", only=CHAPTERS, out=tmp_path / "book")
    _manifest(two, book, 2, 3, names[2:])
    with pytest.raises(BookError, match="the shards were split 2 and 3 ways"):
        merge_shards([one, two], REPO, profile="smoke", only=CHAPTERS, out=tmp_path / "book")
    assert not (tmp_path / "book").exists()
    assert [folder for folder, _ in read_shards([one, one / ".." / "one"])] == [one]  # a manifest counts once


def _finished(grid: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted(grid.glob("*/metrics.json"))}


def test_two_shards_then_a_merge_equal_one_unsharded_build(shared_data: Path, tmp_path: Path) -> None:
    """Issue 21, item 3: ``--shard 1/2`` and ``2/2`` as separate processes, then ``--merge``; the merged runs
    folder's results equal those of the same runs made in one go, and the chapters' pages build from it."""
    from emlib.grid.runner import read_results, run_configs

    env = {**os.environ, "EMLIB_DATA": str(shared_data)}
    base = [sys.executable, "-m", "emlib.book", "build", "--root", str(REPO), "--profile", "smoke", "--only", *CHAPTERS]
    shards = [subprocess.Popen([*base, "--shard", f"{i}/2", "--out", str(tmp_path / f"shard{i}")], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (1, 2)]
    logs = [p.communicate()[0] for p in shards]
    assert [p.returncode for p in shards] == [0, 0], logs
    manifests = [json.loads((tmp_path / f"shard{i}" / "runs" / f"shard-{i}-of-2.json").read_text()) for i in (1, 2)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMLIB_DATA", str(shared_data))
        book = book_runs(REPO, profile="smoke", only=CHAPTERS)
        names = list(book.folders())
        ones = [set(m["runs"]) for m in manifests]
        assert ones[0] and ones[1] and not ones[0] & ones[1] and ones[0] | ones[1] == set(names)
        for i, m in enumerate(manifests, start=1):
            assert set(_finished(tmp_path / f"shard{i}" / "runs" / "smoke")) == set(m["runs"])  # its share, nothing else
            assert m["profile"] == "smoke" and m["chapters"] == CHAPTERS and m["estimated_seconds"] > 0
        unsharded = tmp_path / "unsharded" / "smoke"
        run_configs(book.configs, unsharded, root=None, progress=False, profile="smoke")
    made = {**_finished(tmp_path / "shard1" / "runs" / "smoke"), **_finished(tmp_path / "shard2" / "runs" / "smoke")}

    out = tmp_path / "book"
    proc = subprocess.run([*base, "--merge", str(tmp_path / "shard1" / "runs"), str(tmp_path / "shard2"), "--out", str(out)],
                          env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in CHAPTERS:
        assert (out / "_build" / "html" / "book" / "chapters" / f"{name}.html").is_file()
    assert _finished(out / "runs" / "smoke") == made  # every run read back, none made again, none added
    timings = json.loads((out / "book" / "chapters" / "timings.json").read_text())
    assert timings["latest"]["partial"] == "--only"

    merged, one_go = (read_results(folder).sort_values(["run_id", "test_set", "test_labels"]).reset_index(drop=True)
                      .drop(columns=list(TIMING_COLUMNS)) for folder in (out / "runs" / "smoke", unsharded))
    assert len(merged) >= 4 * 2 and set(merged.run_id) == set(names)
    pd.testing.assert_frame_equal(merged, one_go)

    # a run whose copy in the runs folder has other scores than the shard's is refused, nothing copied
    run = out / "runs" / "smoke" / names[0] / "metrics.json"
    saved = json.loads(run.read_text())
    saved["rows"][0]["iou_fg"] = 0.123
    run.write_text(json.dumps(saved))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMLIB_DATA", str(shared_data))
        with pytest.raises(BookError, match=f"run {names[0]} was made twice with different scores"):
            merge_shards([tmp_path / "shard1", tmp_path / "shard2"], REPO, profile="smoke", only=CHAPTERS, out=out)
    shutil.rmtree(tmp_path / "unsharded")


def test_a_store_group_goes_to_one_share_at_the_sum_of_its_runs() -> None:
    seconds, groups = [5, 1, 4, 3, 3, 2], ["a", None, "a", None, None, "a"]
    shares = split_shares(seconds, 3, groups=groups)
    assert sorted(k for s in shares for k in s) == list(range(6))
    assert sum(1 for s in shares if {0, 2, 5} & set(s)) == 1 and any({0, 2, 5} <= set(s) for s in shares)
    assert [0, 2, 5] in shares  # the group weighs 11, more than all the rest: alone in its share
    assert split_shares(seconds, 2, groups=[None] * 6) == split_shares(seconds, 2)


def test_a_shard_runs_each_store_group_in_one_go() -> None:
    """A process keeps a few stores: a shard runs one group's runs one after another, not interleaved."""
    from emlib.book.shards import _store_order

    assert _store_order([0, 1, 2, 3, 4, 5], [None, "a", "b", "a", None, "b"]) == [0, 1, 3, 2, 5, 4]
    assert _store_order([2, 4], [None] * 5) == [2, 4]
