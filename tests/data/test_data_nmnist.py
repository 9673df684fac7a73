"""N-MNIST: the real offline recordings, frames checked against a numpy decode of the .bin
bytes, the frame cache, tonic's layout and download, the error paths."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
import tonic
import torch
from helpers.nmnist_files import decode_bin, encode_events, expected_frames, write_recording  # noqa: F401
from helpers.runs import DATA_ROOT
from torch.utils.data import DataLoader

from antlr_exp.data import DatasetCorruptError, cache_stats, load_task, reset_cache_stats
from antlr_exp.errors import ConfigError, DatasetNotFoundError

SHARED_NMNIST = DATA_ROOT / "nmnist"
needs_shared = pytest.mark.skipif(
    not (SHARED_NMNIST / "Train").is_dir(),
    reason=f"the offline N-MNIST subset is not at {SHARED_NMNIST} (set ANTLR_EXP_DATA to the folder holding nmnist/)",
)
# Per digit 0..9, from the README of the offline N-MNIST subset.
SHARED_TRAIN_PER_DIGIT = [97, 116, 99, 93, 105, 92, 94, 117, 87, 100]
SHARED_TEST_PER_DIGIT = [8, 14, 8, 11, 14, 7, 10, 15, 2, 11]


SMALL_EVENTS = [
    (0, 0, 0, 0),
    (33, 33, 1, 999),
    (5, 7, 1, 1000),
    (5, 7, 1, 1500),
    (12, 3, 0, 2999),
    (20, 21, 0, 120_000),
    (1, 2, 1, 300_000),
]


def write_small_dataset(root: Path, per_digit_train: int = 2, per_digit_test: int = 1) -> None:
    """Made-up recordings in the original layout."""
    for split, per_digit in (("Train", per_digit_train), ("Test", per_digit_test)):
        for digit in range(10):
            for n in range(per_digit):
                events = [(x, (y + digit) % 34, p, t) for x, y, p, t in SMALL_EVENTS]
                write_recording(root / split / str(digit) / f"{digit * 100 + n + 1:05d}.bin", events)


# ---------------------------------------------------------------- the real recordings


@pytest.fixture(scope="module")
def shared_task(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    reset_cache_stats()
    start = time.perf_counter()
    task = load_task("nmnist", root=SHARED_NMNIST, cache_dir=cache)
    first = time.perf_counter() - start
    assert cache_stats() == {"hits": 0, "misses": 2}
    start = time.perf_counter()
    cached = load_task("nmnist", root=SHARED_NMNIST, cache_dir=cache)
    second = time.perf_counter() - start
    assert cache_stats() == {"hits": 2, "misses": 2}
    print(f"\n[nmnist] 1,100 recordings, T=300: first load {first:.2f} s, cached load {second:.3f} s")
    return task, cached, first, second


@needs_shared
def test_shared_nmnist_counts_and_labels(shared_task):
    task = shared_task[0]
    assert len(task.train) + len(task.val) == 1000
    assert len(task.val) == 1000 // 6
    assert len(task.test) == 100
    assert task.input_shape == (2, 34, 34) and task.num_steps == 300
    assert task.num_outputs == 10 and task.target_kind == "label"
    train_paths = [task.train.path(i) for i in range(len(task.train))]
    train_paths += [task.val.path(i) for i in range(len(task.val))]
    test_paths = [task.test.path(i) for i in range(len(task.test))]
    assert sorted(train_paths) == sorted(str(p) for p in SHARED_NMNIST.glob("Train/*/*.bin"))
    assert sorted(test_paths) == sorted(str(p) for p in SHARED_NMNIST.glob("Test/*/*.bin"))
    labels = {}
    for split in (task.train, task.val, task.test):
        for i, label in enumerate(split.labels.tolist()):
            assert label == int(Path(split.path(i)).parent.name)
            labels[Path(split.path(i)).relative_to(SHARED_NMNIST).as_posix()] = label
    train_counts = np.bincount([v for k, v in labels.items() if k.startswith("Train")], minlength=10)
    test_counts = np.bincount([v for k, v in labels.items() if k.startswith("Test")], minlength=10)
    assert train_counts.tolist() == SHARED_TRAIN_PER_DIGIT
    assert test_counts.tolist() == SHARED_TEST_PER_DIGIT
    # MNIST order: the training set starts 5, 0, 4, 1, 9; the test set 7, 2, 1, 0, 4.
    by_id = {(k.split("/")[0], k.split("/")[2]): v for k, v in labels.items()}
    assert [by_id["Train", f"{n:05d}.bin"] for n in range(1, 6)] == [5, 0, 4, 1, 9]
    assert [by_id["Test", f"{n:05d}.bin"] for n in range(1, 6)] == [7, 2, 1, 0, 4]


@needs_shared
def test_shared_nmnist_frames_match_the_bin_bytes(shared_task):
    task = shared_task[0]
    for split in (task.train, task.val, task.test):
        for item in (0, len(split) // 3, len(split) - 1):
            frames, label = split[item]
            assert frames.shape == (300, 2, 34, 34) and frames.dtype == torch.float32
            assert set(frames.unique().tolist()) <= {0.0, 1.0}
            assert label.shape == () and label.dtype == torch.int64
            assert torch.equal(frames, expected_frames(Path(split.path(item)), 300))


@needs_shared
def test_shared_nmnist_cache_hit_gives_the_same_frames(shared_task):
    task, cached, first, second = shared_task
    assert not task.train.from_cache and cached.train.from_cache and cached.test.from_cache
    assert second < first
    for name in ("train", "val", "test"):
        fresh, again = getattr(task, name), getattr(cached, name)
        assert len(fresh) == len(again)
        for item in (0, len(fresh) - 1):
            assert fresh.path(item) == again.path(item)
            assert torch.equal(fresh[item][0], again[item][0])


@needs_shared
def test_shared_nmnist_dataloader_batches(shared_task):
    frames, labels = next(iter(DataLoader(shared_task[0].train, batch_size=16, shuffle=True)))
    assert frames.shape == (16, 300, 2, 34, 34) and labels.shape == (16,)


@needs_shared
def test_shared_nmnist_cache_missed_when_framing_changes(tmp_path):
    common = {"root": SHARED_NMNIST, "cache_dir": tmp_path, "limit_train": 40, "limit_test": 10}
    reset_cache_stats()
    base = load_task("nmnist", **common)
    assert cache_stats() == {"hits": 0, "misses": 2}
    load_task("nmnist", **common)
    assert cache_stats() == {"hits": 2, "misses": 2}
    shorter = load_task("nmnist", num_steps=150, **common)
    assert cache_stats() == {"hits": 2, "misses": 4}
    assert not shorter.train.from_cache
    frames, _ = shorter.train[0]
    assert frames.shape == (150, 2, 34, 34)
    assert torch.equal(frames, base.train[0][0][:150])
    load_task("nmnist", bin_us=2000, **common)
    assert cache_stats() == {"hits": 2, "misses": 6}
    load_task("nmnist", first_saccade_only=True, **common)
    assert cache_stats() == {"hits": 2, "misses": 8}
    load_task("nmnist", num_steps=150, **common)
    assert cache_stats() == {"hits": 4, "misses": 8}


@needs_shared
def test_shared_nmnist_bin_width_window_and_first_saccade(tmp_path):
    common = {"root": SHARED_NMNIST, "cache_dir": tmp_path, "limit_train": 6, "limit_test": 3}
    wide = load_task("nmnist", num_steps=100, bin_us=2000, **common)
    saccade = load_task("nmnist", first_saccade_only=True, **common)
    longer = load_task("nmnist", num_steps=400, **common)
    for item in range(len(wide.test)):
        path = Path(wide.test.path(item))
        assert torch.equal(wide.test[item][0], expected_frames(path, 100, bin_us=2000))
        assert torch.equal(saccade.test[item][0], expected_frames(path, 300, before_us=100_000))
        assert saccade.test[item][0][100:].sum() == 0
        frames = longer.test[item][0]
        assert frames.shape == (400, 2, 34, 34)
        assert torch.equal(frames, expected_frames(path, 400))
        last_step = int(decode_bin(path)["t"].max()) // 1000
        assert frames[last_step].sum() > 0 and frames[last_step + 1 :].sum() == 0


@needs_shared
def test_shared_nmnist_split_is_seeded(tmp_path):
    common = {"root": SHARED_NMNIST, "cache_dir": tmp_path, "limit_train": 30, "limit_test": 10}
    first = load_task("nmnist", seed=1, **common)
    again = load_task("nmnist", seed=1, **common)
    other = load_task("nmnist", seed=2, **common)

    def paths(split):
        return [split.path(i) for i in range(len(split))]

    assert (len(first.train), len(first.val), len(first.test)) == (30, 10, 10)
    for name in ("train", "val", "test"):
        assert paths(getattr(first, name)) == paths(getattr(again, name))
        assert paths(getattr(first, name)) != paths(getattr(other, name))
    assert set(paths(first.train)).isdisjoint(paths(first.val))


@needs_shared
def test_shared_folder_is_never_downloaded_into(tmp_path, monkeypatch):
    def no_download(self):
        raise AssertionError("download attempted")

    monkeypatch.setattr(tonic.datasets.NMNIST, "download", no_download)
    with pytest.warns(UserWarning, match="download=true is ignored"):
        task = load_task("nmnist", root=SHARED_NMNIST, download=True, cache_dir=tmp_path, limit_train=4, limit_test=2)
    assert len(task.train) == 4


# ---------------------------------------------------------------- made-up recordings


def test_made_up_recordings_frame_exactly(tmp_path):
    root = tmp_path / "nmnist"
    write_small_dataset(root)
    task = load_task("nmnist", root=root, cache_dir=tmp_path / "cache", num_steps=4)
    assert (len(task.train), len(task.val), len(task.test)) == (17, 3, 10)
    frames, label = task.test[0]
    digit = int(label)
    expected = torch.zeros(4, 2, 34, 34)
    # (x, y, p, t): (0,0,0,0) -> step 0; (33,33,1,999) -> step 0; (5,7,1,1000) and (5,7,1,1500)
    # -> one entry at step 1; (12,3,0,2999) -> step 2; events at 120 ms and 300 ms fall outside.
    for x, y, p, step in ((0, 0, 0, 0), (33, 33, 1, 0), (5, 7, 1, 1), (12, 3, 0, 2)):
        expected[step, p, (y + digit) % 34, x] = 1
    assert torch.equal(frames, expected)


# Events at the edges of the first saccade (100,000 us) and of the window (T * bin_us), each at a
# pixel of its own, with the frame each lands in: (x, y, p, t_us, frame without first_saccade_only,
# frame with it); None: dropped. tonic's rule, which frame_events follows:
#   * tonic.datasets.NMNIST(first_saccade_only=True) keeps the events with t < 1e5 (strict), so an
#     event at exactly 100,000 us is not of the first saccade;
#   * tonic.transforms.ToFrame(time_window=bin_us, start_time=0, end_time=T * bin_us) cuts
#     (SliceByTime, np.searchsorted on both edges) T frames, frame k = {k * bin_us <= t < (k + 1) * bin_us},
#     so an event at exactly T * bin_us lies in no frame, and t = k * bin_us opens frame k.
BOUNDARY_CASES = {
    # T = 101, bin_us = 1000: the window ends at 101,000 us, after the saccade limit
    (101, 1000): [
        (1, 1, 0, 0, 0, 0),
        (2, 2, 0, 99_999, 99, 99),
        (3, 3, 0, 100_000, 100, None),
        (4, 4, 1, 100_001, 100, None),
        (5, 5, 1, 100_999, 100, None),
        (6, 6, 1, 101_000, None, None),
        (7, 7, 0, 101_001, None, None),
    ],
    # T = 100, bin_us = 1000: the window ends at the saccade limit itself
    (100, 1000): [(2, 2, 0, 99_999, 99, 99), (3, 3, 0, 100_000, None, None), (4, 4, 1, 100_001, None, None)],
    # T = 200, bin_us = 600 (the window ends at 120,000 us): the limit falls inside frame 166 = [99,600, 100,200)
    (200, 600): [
        (1, 1, 1, 599, 0, 0),
        (8, 8, 0, 600, 1, 1),
        (2, 2, 0, 99_999, 166, 166),
        (3, 3, 0, 100_000, 166, None),
        (4, 4, 1, 100_001, 166, None),
        (5, 5, 0, 100_200, 167, None),
        (6, 6, 1, 119_999, 199, None),
        (7, 7, 0, 120_000, None, None),
        (9, 9, 1, 120_001, None, None),
    ],
}


@pytest.mark.parametrize("first_saccade_only", [False, True])
@pytest.mark.parametrize("num_steps, bin_us", sorted(BOUNDARY_CASES))
def test_events_at_the_saccade_limit_and_the_window_end(tmp_path, num_steps, bin_us, first_saccade_only):
    """Events at limit - 1, limit, limit + 1 us (limit 100,000 us) and at the window's end land in
    the frame tonic's rule gives them (table above) or are dropped, through load_task."""
    events = BOUNDARY_CASES[num_steps, bin_us]
    expected = torch.zeros(num_steps, 2, 34, 34)
    for x, y, p, t, frame, saccade_frame in events:
        step = saccade_frame if first_saccade_only else frame
        if step is not None:
            expected[step, p, y, x] = 1
    # the table is tonic's rule: tonic's own ToFrame (and its saccade cut) give the same frames
    raw = np.array([(x, y, t, p) for x, y, p, t, _, _ in events], dtype=tonic.datasets.NMNIST.dtype)
    if first_saccade_only:
        raw = raw[raw["t"] < 1e5]
    by_tonic = tonic.transforms.ToFrame(
        sensor_size=(34, 34, 2), time_window=bin_us, start_time=0, end_time=num_steps * bin_us
    )(raw)
    assert torch.equal(torch.from_numpy(by_tonic[:num_steps] > 0).float(), expected)
    root = tmp_path / "nmnist"
    for split, per_digit in (("Train", 1), ("Test", 1)):
        for digit in range(10):
            write_recording(root / split / str(digit) / f"{digit + 1:05d}.bin", [e[:4] for e in events])
    task = load_task(
        "nmnist",
        root=root,
        cache_dir=tmp_path / "cache",
        num_steps=num_steps,
        bin_us=bin_us,
        first_saccade_only=first_saccade_only,
        limit_test=2,
    )
    for item in range(len(task.test)):
        assert torch.equal(task.test[item][0], expected)


def test_missing_root_names_path_files_and_remedy(tmp_path):
    root = tmp_path / "absent"
    with pytest.raises(DatasetNotFoundError) as caught:
        load_task("nmnist", root=root, cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert str(root) in message and "does not exist" in message
    assert "Train/<digit>/<id>.bin" in message and "Test/<digit>/<id>.bin" in message
    assert "download=true" in message and "Train.zip" in message
    assert not root.exists()


def test_empty_folder_names_path_files_and_remedy(tmp_path):
    with pytest.raises(DatasetNotFoundError) as caught:
        load_task("nmnist", root=tmp_path, cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert str(tmp_path) in message and "Train/<digit>/<id>.bin" in message
    assert "download=true" in message
    assert list(tmp_path.iterdir()) == []


def test_missing_test_split_is_named(tmp_path):
    write_small_dataset(tmp_path)
    for path in (tmp_path / "Test").rglob("*.bin"):
        path.unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        load_task("nmnist", root=tmp_path, cache_dir=tmp_path / "cache")
    assert "for Test recordings" in str(caught.value)


@pytest.mark.parametrize(
    "content, complaint",
    [
        (encode_events(SMALL_EVENTS[:3]) + b"\x01\x02", "17 bytes, expected a non-zero multiple of 5"),
        (b"", "0 bytes"),
        (encode_events([(3, 4, 0, 10), (40, 4, 1, 20)]), "event 1 has x=40, y=4"),
        (encode_events([(3, 34, 0, 10)]), "event 0 has x=3, y=34"),
    ],
)
def test_corrupt_recording_is_named(tmp_path, content, complaint):
    write_small_dataset(tmp_path / "nmnist")
    bad = tmp_path / "nmnist" / "Test" / "3" / "00301.bin"
    bad.write_bytes(content)
    with pytest.raises(DatasetCorruptError) as caught:
        load_task("nmnist", root=tmp_path / "nmnist", cache_dir=tmp_path / "cache")
    assert str(bad) in str(caught.value) and complaint in str(caught.value)
    assert isinstance(caught.value, DatasetNotFoundError)


@pytest.mark.parametrize(
    "link, complaint",
    [
        (lambda bad: bad.symlink_to(bad.parent / "gone.bin"), "No such file or directory"),  # a broken link
        (lambda bad: bad.symlink_to(bad), "Too many levels of symbolic links"),  # a loop of links
    ],
    ids=["broken", "loop"],
)
def test_broken_or_looping_link_is_named(tmp_path, link, complaint):
    write_small_dataset(tmp_path / "nmnist")
    bad = tmp_path / "nmnist" / "Train" / "4" / "00401.bin"
    bad.unlink()
    link(bad)
    with pytest.raises(DatasetCorruptError) as caught:
        load_task("nmnist", root=tmp_path / "nmnist", cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert message == f"N-MNIST recording {bad} cannot be read ({complaint}); replace it with the original file"


@pytest.mark.parametrize("download", [False, True])
def test_a_data_root_that_is_a_file_or_under_one_is_named(tmp_path, download):
    blocker = tmp_path / "nmnist.zip"
    blocker.write_bytes(b"not a folder")
    for root, where in ((blocker, "is a file, not a folder"), (blocker / "nmnist", f"lies under {blocker}, a file")):
        with pytest.raises(DatasetNotFoundError) as caught:
            load_task("nmnist", root=root, download=download, cache_dir=tmp_path / "cache")
        assert str(caught.value) == (
            f"N-MNIST not found: the data root {root} {where}; set data.root (the "
            f"library's root=) to the folder that holds Train/ and Test/ (or NMNIST/)"
        )
    assert sorted(tmp_path.iterdir()) == [blocker]


def test_broken_cache_file_is_rebuilt(tmp_path):
    write_small_dataset(tmp_path / "nmnist")
    options = {"root": tmp_path / "nmnist", "cache_dir": tmp_path / "cache", "num_steps": 4}
    first = load_task("nmnist", **options)
    for cache_file in (tmp_path / "cache").glob("*.npz"):
        cache_file.write_bytes(b"not a zip file")
    reset_cache_stats()
    again = load_task("nmnist", **options)
    assert cache_stats() == {"hits": 0, "misses": 2}
    assert torch.equal(first.test[0][0], again.test[0][0])
    reset_cache_stats()
    load_task("nmnist", **options)
    assert cache_stats() == {"hits": 2, "misses": 0}
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".npz")] == []


def test_unwritable_cache_warns_and_still_loads(tmp_path):
    write_small_dataset(tmp_path / "nmnist")
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="could not be cached"):
        task = load_task("nmnist", root=tmp_path / "nmnist", cache_dir=blocker, num_steps=4)
    assert len(task.test) == 10


def test_limits_and_bad_options(tmp_path):
    write_small_dataset(tmp_path / "nmnist")
    task = load_task(
        "nmnist", root=tmp_path / "nmnist", cache_dir=tmp_path / "cache", num_steps=4, limit_train=5, limit_test=2
    )
    assert (len(task.train), len(task.val), len(task.test)) == (5, 2, 2)
    for options, name in (
        ({"bin_us": 0}, "bin_us=0"),
        ({"limit_train": 0}, "limit_train=0"),
        ({"first_saccade_only": "yes"}, "first_saccade_only='yes'"),
    ):
        with pytest.raises(ConfigError, match=name):
            load_task("nmnist", root=tmp_path / "nmnist", cache_dir=tmp_path / "cache", **options)


# ---------------------------------------------------------------- tonic's layout and download


def make_tonic_layout(location: Path, split: str, archive: str, per_digit: int = 1000) -> None:
    """A made-up full tonic download: the archive (empty) and 10 x per_digit recordings,
    hard links of one small file."""
    location.mkdir(parents=True, exist_ok=True)
    (location / archive).write_bytes(b"")
    source = write_recording(location / f".{split}-source.bin", SMALL_EVENTS)
    for digit in range(10):
        folder = location / split / str(digit)
        folder.mkdir(parents=True)
        for n in range(per_digit):
            os.link(source, folder / f"{digit * per_digit + n + 1:05d}.bin")
    source.unlink()


class SpyNMNIST(tonic.datasets.NMNIST):
    """tonic's NMNIST, counting instances; a download fails the test."""

    instances = 0

    def __init__(self, *args, **kwargs):
        type(self).instances += 1
        super().__init__(*args, **kwargs)

    def download(self):
        raise AssertionError("download attempted")


SpyNMNIST.__name__ = "NMNIST"  # tonic keeps its files in <root>/<class name>


def test_full_tonic_layout_is_listed_by_tonic(tmp_path, monkeypatch):
    make_tonic_layout(tmp_path / "NMNIST", "Train", "train.zip")
    make_tonic_layout(tmp_path / "NMNIST", "Test", "test.zip")
    SpyNMNIST.instances = 0
    monkeypatch.setattr(tonic.datasets, "NMNIST", SpyNMNIST)
    task = load_task("nmnist", root=tmp_path, cache_dir=tmp_path / "cache", num_steps=4, limit_train=20, limit_test=10)
    assert SpyNMNIST.instances == 2
    assert (len(task.train), len(task.val), len(task.test)) == (20, 10, 10)
    for split, folder in ((task.train, "Train"), (task.test, "Test")):
        for i in range(len(split)):
            path = Path(split.path(i))
            assert path.is_relative_to(tmp_path / "NMNIST" / folder)
            assert int(split.labels[i]) == int(path.parent.name)


def test_failed_download_leaves_no_partial_files(tmp_path, monkeypatch):
    def broken_download(self):
        os.makedirs(self.location_on_system, exist_ok=True)
        Path(self.location_on_system, self.filename).write_bytes(b"partial")
        raise RuntimeError("connection reset by peer")

    monkeypatch.setattr(tonic.datasets.NMNIST, "download", broken_download)
    root = tmp_path / "data" / "nmnist"
    with pytest.raises(DatasetNotFoundError) as caught:
        load_task("nmnist", root=root, download=True, cache_dir=tmp_path / "cache")
    assert "download failed" in str(caught.value) and "connection reset" in str(caught.value)
    assert str(root) in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_download_moves_complete_split_into_place(tmp_path, monkeypatch):
    def fake_download(self):
        make_tonic_layout(Path(self.location_on_system), self.folder_name, self.filename, per_digit=1000)

    monkeypatch.setattr(tonic.datasets.NMNIST, "download", fake_download)
    root = tmp_path / "data"
    task = load_task(
        "nmnist", root=root, download=True, cache_dir=tmp_path / "cache", num_steps=4, limit_train=5, limit_test=5
    )
    assert (len(task.train), len(task.val), len(task.test)) == (5, 5, 5)
    assert sorted(p.name for p in (root / "NMNIST").iterdir()) == ["Test", "Train", "test.zip", "train.zip"]
    assert sorted(p.name for p in root.iterdir()) == ["NMNIST"]
