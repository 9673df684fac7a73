"""SHD and SSC through tonic: tiny HDF5 files in tonic's layout, written here, framed and checked
against a hand computation; the splits, the cache, missing and corrupt files, the download; and
``antlr-train task=shd`` on them through the installed command."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import tonic
import torch
from helpers.runs import compose_config, run_cli
from helpers.shd_files import CHANNELS, random_samples, write_fake_shd, write_file  # noqa: F401

from antlr_exp.data import DatasetCorruptError, cache_stats, load_task, reset_cache_stats
from antlr_exp.errors import DatasetNotFoundError


def hand_frames(times, units, num_steps: int, bin_us: int) -> np.ndarray:
    """[T, 700] by hand: a spike at t seconds (float16 as stored) falls in bin floor(t * 1e6 / bin_us)
    of microseconds truncated to integers, as tonic reads it; bins from T on are dropped."""
    microseconds = np.trunc(np.asarray(times, dtype=np.float16).astype(np.float64) * 1e6).astype(np.int64)
    bins = microseconds // bin_us
    frames = np.zeros((num_steps, CHANNELS), dtype=np.float32)
    keep = bins < num_steps
    frames[bins[keep], np.asarray(units, dtype=np.int64)[keep]] = 1.0
    return frames


def index_of(dataset, item: int) -> int:
    """The sample of the file that item ``item`` of an EventFrames split is."""
    return int(dataset.path(item).rpartition("#")[2])


def test_frames_are_the_hand_computation(tmp_path):
    written = write_fake_shd(tmp_path)
    # an edge case: spikes exactly on bin edges (k * 2**-6 s = k * 15625 us), one sample with none
    written["test"][0] = (np.array([0.0, 2**-6, 3 * 2**-6, 3.5 * 2**-6]), np.array([1, 2, 3, 699]), 0)
    written["test"][1] = (np.array([]), np.array([]), 1)
    write_file(tmp_path / "SHD" / "shd_test.h5", written["test"])
    for num_steps, bin_us in ((150, 7000), (4, 15625)):
        data = load_task("shd", root=tmp_path, num_steps=num_steps, bin_us=bin_us, cache_dir=tmp_path / "cache")
        assert (data.input_shape, data.num_steps, data.num_outputs, data.target_kind) == (
            (700,),
            num_steps,
            20,
            "label",
        )
        for split, source in (("train", "train"), ("val", "train"), ("test", "test")):
            dataset = getattr(data, split)
            for item in range(len(dataset)):
                frames, label = dataset[item]
                times, units, wanted_label = written[source][index_of(dataset, item)]
                assert torch.equal(frames, torch.from_numpy(hand_frames(times, units, num_steps, bin_us)))
                assert label.dtype == torch.int64 and int(label) == wanted_label
    edge = data.test[[index_of(data.test, i) for i in range(len(data.test))].index(0)][0]
    assert edge[0, 1] == edge[1, 2] == edge[3, 3] == edge[3, 699] == 1 and edge.sum() == 4


def test_splits_subsets_and_the_cache(tmp_path):
    write_fake_shd(tmp_path, train=36, test=12)
    cache = tmp_path / "cache"
    reset_cache_stats()
    data = load_task("shd", root=tmp_path, seed=3, cache_dir=cache)
    train = {index_of(data.train, i) for i in range(len(data.train))}
    val = {index_of(data.val, i) for i in range(len(data.val))}
    assert len(val) == 36 // 6 and not train & val and train | val == set(range(36)) and len(data.test) == 12
    assert cache_stats() == {"hits": 0, "misses": 2}  # the training file (train and val) and the test file
    again = load_task("shd", root=tmp_path, seed=3, cache_dir=cache)
    assert cache_stats() == {"hits": 2, "misses": 2}
    assert all(torch.equal(again.train[i][0], data.train[i][0]) for i in range(len(data.train)))
    other = load_task("shd", root=tmp_path, seed=4, cache_dir=cache)
    assert {index_of(other.val, i) for i in range(len(other.val))} != val  # the seed draws the split
    small = load_task("shd", root=tmp_path, seed=3, cache_dir=cache, limit_train=5, limit_test=2)
    assert (len(small.train), len(small.val), len(small.test)) == (5, 2, 2)
    reset_cache_stats()
    load_task("shd", root=tmp_path, seed=3, cache_dir=cache, bin_us=5000)  # another binning: not the cached one
    assert cache_stats()["misses"] == 2
    path = tmp_path / "SHD" / "shd_test.h5"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # rewritten, same size
    reset_cache_stats()
    load_task("shd", root=tmp_path, seed=3, cache_dir=cache, bin_us=5000)
    assert cache_stats() == {"hits": 1, "misses": 1}


def test_ssc_has_its_own_validation_file(tmp_path):
    rng = np.random.default_rng(1)
    sizes = {"train": 14, "valid": 7, "test": 5}
    for split, count in sizes.items():
        write_file(tmp_path / "SSC" / f"ssc_{split}.h5", random_samples(count, rng, 35), num_classes=35)
    data = load_task("ssc", root=tmp_path, cache_dir=tmp_path / "cache")
    assert (len(data.train), len(data.val), len(data.test)) == (14, 7, 5) and data.num_outputs == 35
    assert data.val.path(0).startswith(str(tmp_path / "SSC" / "ssc_valid.h5"))


def test_missing_files_are_one_line(tmp_path):
    write_fake_shd(tmp_path)
    (tmp_path / "SHD" / "shd_test.h5").unlink()
    with pytest.raises(DatasetNotFoundError) as raised:
        load_task("shd", root=tmp_path)
    message = str(raised.value)
    assert "\n" not in message and "shd_test.h5" in message and "shd_train.h5" not in message.split("(")[0]
    assert str(tmp_path / "SHD") in message and "download=true" in message
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_task("shd", root=tmp_path / "nowhere")


def corrupt(tmp_path, how: str):
    written = write_fake_shd(tmp_path)
    path = tmp_path / "SHD" / "shd_train.h5"
    if how == "not hdf5":
        path.write_bytes(b"\x00" * 100)
    elif how == "no labels":
        with h5py.File(path, "a") as file:
            del file["labels"]
    elif how == "no extra":
        with h5py.File(path, "a") as file:
            del file["extra/keys"]
    elif how == "label":
        samples = written["train"]
        samples[4] = (samples[4][0], samples[4][1], 20)
        write_file(path, samples)
    elif how == "unit":
        samples = written["train"]
        samples[7] = (samples[7][0], np.full(len(samples[7][1]), 700), samples[7][2])
        write_file(path, samples)
    elif how == "cut":
        path.write_bytes(path.read_bytes()[:3000])
    return path


@pytest.mark.parametrize(
    "how, words",
    [
        ("not hdf5", ["is corrupt"]),
        ("cut", ["is corrupt"]),
        ("no labels", ["is corrupt", "labels"]),
        ("no extra", ["is corrupt", "keys"]),
        ("label", ["sample 4 has label 20", "0..19"]),
        ("unit", ["sample 7 has a spike at unit 700", "0..699"]),
    ],
)
def test_corrupt_files_are_one_line(tmp_path, how, words):
    path = corrupt(tmp_path, how)
    with pytest.raises(DatasetCorruptError) as raised:
        load_task("shd", root=tmp_path, cache_dir=tmp_path / "cache")
    message = str(raised.value)
    assert "\n" not in message and str(path) in message and "replace it with the original file" in message
    for word in words:
        assert word in message, message


def test_download_goes_through_tonic_and_lands_in_place(tmp_path, monkeypatch):
    source = tmp_path / "source"
    write_fake_shd(source)
    calls = []

    def fake_download(self):  # tonic's download: the archive and its extracted file
        calls.append(self.url)
        name = os.path.basename(self.url)[: -len(".zip")]
        os.makedirs(self.location_on_system, exist_ok=True)
        open(os.path.join(self.location_on_system, name + ".zip"), "wb").close()
        with (
            open(source / "SHD" / name, "rb") as stream,
            open(os.path.join(self.location_on_system, name), "wb") as out,
        ):
            out.write(stream.read())

    monkeypatch.setattr(tonic.datasets.SHD, "download", fake_download)
    root = tmp_path / "data" / "shd"
    data = load_task("shd", root=root, download=True, cache_dir=tmp_path / "cache")
    assert sorted(os.path.basename(u) for u in calls) == ["shd_test.h5.zip", "shd_train.h5.zip"]
    assert sorted(p.name for p in (root / "SHD").iterdir()) == [
        "shd_test.h5",
        "shd_test.h5.zip",
        "shd_train.h5",
        "shd_train.h5.zip",
    ]
    assert len(data.test) == 10

    def failing(self):
        raise OSError("network unreachable")

    monkeypatch.setattr(tonic.datasets.SHD, "download", failing)
    with pytest.raises(DatasetNotFoundError, match="The download failed: OSError: network unreachable"):
        load_task("shd", root=tmp_path / "elsewhere" / "shd", download=True)
    assert not (tmp_path / "elsewhere").exists()


def test_the_shd_preset_per_method():
    timing = compose_config("experiment=shd", "method=timing")
    assert timing.task.name == "shd" and timing.trials == 16
    assert timing.method.penalty_window == "early_stop" and timing.loss.name == "latency"
    activation = compose_config("experiment=shd", "method=activation")
    assert activation.loss.name == "count" and activation.loss.n_true == 10.0
    antlr = compose_config("experiment=shd", "method=antlr")
    assert antlr.loss.name == "latency" and antlr.loss.lambda_ns == 0.1


@pytest.mark.slow
def test_antlr_train_on_shd_files(tmp_path):
    write_fake_shd(tmp_path / "data" / "shd")
    common = ["task=shd", "trainer.progress_bar=false", f"task.options.cache_dir={tmp_path / 'cache'}"]
    result = run_cli(
        [*common, f"data.root={tmp_path / 'data' / 'shd'}", "trainer.max_steps=5", "hydra.run.dir=run"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["task"] == "shd" and summary["steps"] == 5
    assert summary["num_parameters"] == (700 + 1) * 128 + (128 + 1) * 20  # 700-128-20
    result = run_cli([*common, f"data.root={tmp_path / 'none'}", "hydra.run.dir=missing"], tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("antlr-train: error: SHD not found") and "shd_train.h5 and shd_test.h5" in line
