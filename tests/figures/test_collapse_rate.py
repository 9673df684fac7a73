"""The collapse count of the Fig. 8 study: which trials fell silent, read from metrics.csv files
written here by hand, and the rate's interval against scipy's."""

from __future__ import annotations

import csv
import json

import pytest

from antlr_exp.figures.collapse_rate import main, trial_folders, trial_record, wilson_interval


def write_trial(folder, rows, seed, accuracy=None):
    folder.mkdir(parents=True)
    with open(folder / "metrics.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["epoch", "step", "train_output_spikes_per_sample"])
        writer.writeheader()
        for epoch, spikes in rows:
            writer.writerow({"epoch": epoch, "step": int(epoch * 53), "train_output_spikes_per_sample": spikes})
    if accuracy is not None:
        (folder / "summary.json").write_text(json.dumps({"seed": seed, "test_accuracy": accuracy}))


@pytest.mark.parametrize("successes, n", [(0, 16), (2, 4), (11, 16), (16, 16)])
def test_wilson_interval_equals_scipys(successes, n):
    stats = pytest.importorskip("scipy.stats")
    want = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(want.low, abs=1e-6) and high == pytest.approx(want.high, abs=1e-6)


def test_a_trial_collapses_only_below_the_limit_after_the_first_epoch(tmp_path, capsys):
    # seed 0: silent in the first epoch only (not a collapse); seed 1: collapses at epoch 3 and
    # recovers; seed 2: 1.0 exactly is not below 1; seed 3: still running (no summary: the seed from
    # its folder's name), collapsed
    write_trial(tmp_path / "job" / "seed_0", [(1, 0.2), (2, 5.0), (3, 4.0)], 0, 0.9)
    write_trial(tmp_path / "job" / "seed_1", [(1, 30.0), (2, 12.0), (3, 0.5), (4, 2.0)], 1, 0.6)
    write_trial(tmp_path / "job" / "seed_2", [(1, 20.0), (2, 1.0), (2.5, 1.5)], 2, 0.8)
    write_trial(tmp_path / "job" / "seed_3", [(1, 20.0), (1.5, 0.9), (2, 0.1)], 3)
    records = {r["seed"]: r for r in (trial_record(f, 1.0) for f in trial_folders([tmp_path / "job"]))}
    assert records[0]["collapsed_at_epoch"] is None and records[0]["min_output_spikes"] == 4.0
    assert records[1]["collapsed_at_epoch"] == 3.0 and records[1]["min_output_spikes"] == 0.5
    assert records[2]["collapsed_at_epoch"] is None
    assert records[3]["collapsed_at_epoch"] == 1.5 and records[3]["test_accuracy"] is None
    assert main([str(tmp_path / "job"), "--json", str(tmp_path / "rate.json")]) == 0
    rate = json.loads((tmp_path / "rate.json").read_text())
    assert (rate["collapsed"], rate["n"]) == (2, 4)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("collapsed: 2 of 4 (50 %") and "test accuracy 76.67 +- 15.28 % over 3" in last
