"""Latency-coded MNIST: the real offline files, the encoding checked by hand, the error paths."""

import struct
import time
from fractions import Fraction
from math import floor
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from helpers.runs import DATA_ROOT
from torch.utils.data import DataLoader

from antlr_exp.data import SILENT, DatasetCorruptError, latency_encode, load_task
from antlr_exp.data.encoding import spike_times_to_dense
from antlr_exp.errors import ConfigError, DatasetNotFoundError

SHARED_MNIST = DATA_ROOT / "mnist"
needs_shared = pytest.mark.skipif(
    not (SHARED_MNIST / "MNIST" / "raw").is_dir(),
    reason=f"the offline MNIST copy is not at {SHARED_MNIST} (set ANTLR_EXP_DATA to the folder holding mnist/)",
)
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file with numpy alone (independent of torchvision)."""
    data = path.read_bytes()
    magic = struct.unpack(">I", data[:4])[0]
    dims = struct.unpack(f">{magic & 0xFF}I", data[4 : 4 + 4 * (magic & 0xFF)])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def expected_step(pixel: int, t_max: int) -> int | None:
    """floor((1 - x) * t_max) for x = pixel / 255 in exact rational arithmetic; None if silent."""
    if pixel == 0:
        return None
    return floor((1 - Fraction(pixel, 255)) * t_max)


def write_idx_images(path: Path, images: np.ndarray, count: int | None = None) -> None:
    header = struct.pack(">IIII", 2051, len(images) if count is None else count, 28, 28)
    path.write_bytes(header + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def write_fake_mnist(raw: Path, num_train: int = 12, num_test: int = 6) -> None:
    """Made-up MNIST files (random pixels) in torchvision's layout."""
    rng = np.random.default_rng(0)
    raw.mkdir(parents=True, exist_ok=True)
    write_idx_images(raw / MNIST_FILES[0], rng.integers(0, 256, (num_train, 28, 28)))
    write_idx_labels(raw / MNIST_FILES[1], rng.integers(0, 10, num_train))
    write_idx_images(raw / MNIST_FILES[2], rng.integers(0, 256, (num_test, 28, 28)))
    write_idx_labels(raw / MNIST_FILES[3], rng.integers(0, 10, num_test))


# ---------------------------------------------------------------- the encoding


@pytest.mark.parametrize("t_max", [1, 24, 100, 255])
def test_latency_code_matches_exact_formula_for_every_pixel_value(t_max):
    pixels = torch.arange(256, dtype=torch.uint8)
    steps = latency_encode(pixels, t_max).tolist()
    for pixel, step in enumerate(steps):
        expected = expected_step(pixel, t_max)
        assert step == (SILENT if expected is None else expected), (pixel, step, expected)


def test_latency_code_agrees_with_the_reference_float32_truncation():
    # The authors compute int((0 - 24) * x + 24) with x = p / 255 in float32.
    x = torch.arange(1, 256, dtype=torch.float32) / 255
    reference = ((0 - 24) * x + 24).int()
    ours = latency_encode(torch.arange(1, 256, dtype=torch.uint8), 24).to(torch.int32)
    assert torch.equal(ours, reference)


def test_dense_spike_trains_round_trip():
    times = torch.tensor([[0, 5, SILENT, 99], [SILENT, SILENT, 3, 3]], dtype=torch.uint8)
    dense = spike_times_to_dense(times, 100)
    assert dense.shape == (2, 100, 4) and dense.dtype == torch.float32
    expected = torch.zeros(2, 100, 4)
    for sample, row in enumerate(times.tolist()):
        for neuron, step in enumerate(row):
            if step != SILENT:
                expected[sample, step, neuron] = 1
    assert torch.equal(dense, expected)


def test_latency_encode_refuses_bad_input():
    with pytest.raises(ConfigError, match="uint8"):
        latency_encode(torch.zeros(3), 24)
    with pytest.raises(ConfigError, match="t_max=256"):
        latency_encode(torch.zeros(3, dtype=torch.uint8), 256)


# ---------------------------------------------------------------- the real files


@pytest.fixture(scope="module")
def shared_task():
    return load_task("mnist", root=SHARED_MNIST, seed=0)


@pytest.fixture(scope="module")
def shared_raw():
    raw = SHARED_MNIST / "MNIST" / "raw"
    return {name: read_idx(raw / name) for name in MNIST_FILES}


@needs_shared
def test_shared_mnist_sizes_and_split(shared_task):
    task = shared_task
    assert len(task.train) + len(task.val) == 24_345
    assert len(task.val) == 24_345 // 6
    assert len(task.test) == 10_000
    train_ids, val_ids = task.train.image_ids, task.val.image_ids
    assert torch.cat([train_ids, val_ids]).sort().values.tolist() == list(range(24_345))
    assert torch.equal(task.test.image_ids, torch.arange(10_000))
    assert task.input_shape == (784,) and task.num_steps == 100
    assert task.num_outputs == 10 and task.target_kind == "label"


@needs_shared
def test_shared_mnist_spike_times_and_labels_by_hand(shared_task, shared_raw):
    task = shared_task
    for split, images, labels in (
        (task.train, shared_raw[MNIST_FILES[0]], shared_raw[MNIST_FILES[1]]),
        (task.test, shared_raw[MNIST_FILES[2]], shared_raw[MNIST_FILES[3]]),
    ):
        for item in (0, 1, len(split) // 2, len(split) - 1):
            inputs, label = split[item]
            image_id = int(split.image_ids[item])
            pixels = images[image_id].reshape(-1)
            assert inputs.shape == (100, 784) and inputs.dtype == torch.float32
            assert label.dtype == torch.int64 and label.shape == ()
            assert int(label) == labels[image_id]
            assert set(inputs.unique().tolist()) <= {0.0, 1.0}
            for neuron, pixel in enumerate(pixels.tolist()):
                fired_at = inputs[:, neuron].nonzero().flatten().tolist()
                step = expected_step(pixel, 24)
                assert fired_at == ([] if step is None else [step]), (image_id, neuron, pixel)


@needs_shared
def test_shared_mnist_brightest_pixel_fires_first_and_zeros_stay_silent(shared_task, shared_raw):
    images = shared_raw[MNIST_FILES[0]]
    for item in range(0, len(shared_task.train), 997):
        inputs, _ = shared_task.train[item]
        pixels = images[int(shared_task.train.image_ids[item])].reshape(-1)
        brightest = int(pixels.argmax())
        assert inputs[0, brightest] == 1
        assert inputs[:, pixels == 0].sum() == 0
        assert inputs.sum() == np.count_nonzero(pixels)


@needs_shared
def test_shared_mnist_compact_times_round_trip(shared_task):
    train = shared_task.train
    batch = torch.stack([train[i][0] for i in range(64)])  # [64, T, 784]
    fired = batch.sum(dim=1)
    assert fired.max() <= 1
    recovered = torch.where(fired > 0, batch.argmax(dim=1), SILENT).to(torch.uint8)
    assert torch.equal(recovered, train.spike_times[:64])


@needs_shared
def test_shared_mnist_dataloader_batches(shared_task):
    inputs, labels = next(iter(DataLoader(shared_task.val, batch_size=16, shuffle=True)))
    assert inputs.shape == (16, 100, 784) and labels.shape == (16,)
    assert labels.dtype == torch.int64


@needs_shared
def test_shared_mnist_encoding_speed(shared_raw, capsys):
    images = torch.from_numpy(shared_raw[MNIST_FILES[0]].copy())
    start = time.perf_counter()
    times = latency_encode(images.reshape(len(images), -1), 24)
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    load_task("mnist", root=SHARED_MNIST)
    load_seconds = time.perf_counter() - start
    with capsys.disabled():
        print(
            f"\n[mnist] encoding {len(images)} images: {encode_seconds:.3f} s; "
            f"load_task('mnist') end to end: {load_seconds:.2f} s"
        )
    assert times.shape == (24_345, 784) and times.dtype == torch.uint8
    assert encode_seconds < 10
    assert load_seconds < 20


@needs_shared
def test_shared_mnist_seeded_split_and_limits():
    first = load_task("mnist", root=SHARED_MNIST, seed=3, limit_train=100, limit_test=50)
    again = load_task("mnist", root=SHARED_MNIST, seed=3, limit_train=100, limit_test=50)
    other = load_task("mnist", root=SHARED_MNIST, seed=4, limit_train=100, limit_test=50)
    assert (len(first.train), len(first.val), len(first.test)) == (100, 50, 50)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(first, split).image_ids, getattr(again, split).image_ids)
        assert not torch.equal(getattr(first, split).image_ids, getattr(other, split).image_ids)
    assert set(first.train.image_ids.tolist()).isdisjoint(first.val.image_ids.tolist())
    full = load_task("mnist", root=SHARED_MNIST, seed=3)
    # The limited splits are subsets of the unlimited ones of the same seed.
    assert set(first.train.image_ids.tolist()) <= set(full.train.image_ids.tolist())
    assert set(first.val.image_ids.tolist()) <= set(full.val.image_ids.tolist())


@needs_shared
def test_shared_mnist_t_max_and_num_steps():
    task = load_task("mnist", root=SHARED_MNIST, limit_train=8, limit_test=8, num_steps=40, t_max=40)
    inputs, _ = task.train[0]
    assert inputs.shape == (40, 784)
    with pytest.raises(ConfigError, match="t_max=24 exceeds num_steps=20"):
        load_task("mnist", root=SHARED_MNIST, num_steps=20)


# ---------------------------------------------------------------- made-up files and errors


def test_missing_root_names_path_files_and_remedy(tmp_path):
    root = tmp_path / "no-such-folder"
    with pytest.raises(DatasetNotFoundError) as caught:
        load_task("mnist", root=root)
    message = str(caught.value)
    assert str(root / "MNIST" / "raw") in message
    for name in MNIST_FILES:
        assert name in message
    assert "download=true" in message
    assert not root.exists()


def test_empty_folder_names_path_files_and_remedy(tmp_path):
    with pytest.raises(DatasetNotFoundError) as caught:
        load_task("mnist", root=tmp_path)
    assert str(tmp_path / "MNIST" / "raw") in str(caught.value)
    assert "t10k-labels-idx1-ubyte" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_one_missing_file_is_named(tmp_path):
    write_fake_mnist(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing: t10k-labels-idx1-ubyte\)"):
        load_task("mnist", root=tmp_path)


def test_made_up_files_load_and_split_proportionally(tmp_path):
    write_fake_mnist(tmp_path / "MNIST" / "raw", num_train=60, num_test=7)
    task = load_task("mnist", root=tmp_path)
    assert (len(task.train), len(task.val), len(task.test)) == (50, 10, 7)


def test_truncated_file_is_a_corrupt_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_fake_mnist(raw)
    images = np.zeros((12, 28, 28))
    write_idx_images(raw / "train-images-idx3-ubyte", images, count=13)
    with pytest.raises(DatasetCorruptError) as caught:
        load_task("mnist", root=tmp_path)
    assert str(raw) in str(caught.value) and "train-images-idx3-ubyte" in str(caught.value)


@pytest.mark.parametrize(
    "name, edit, complaint",
    [
        (
            "train-images-idx3-ubyte",
            lambda data: struct.pack(">I", 9999) + data[4:],
            "starts with the magic number 9999; expected 2051 (an IDX file of unsigned bytes in 3 dimensions)",
        ),
        (
            "t10k-labels-idx1-ubyte",
            lambda data: struct.pack(">I", 2051) + data[4:],
            "starts with the magic number 2051; expected 2049 (an IDX file of unsigned bytes in 1 dimension)",
        ),
        (
            "t10k-images-idx3-ubyte",
            lambda data: data[:-5],  # 6 test images: 16 + 6 * 784 bytes
            f"is {16 + 6 * 784 - 5} bytes, but its header announces 6 x 28 x 28 values ({16 + 6 * 784} bytes with the "
            f"header): truncated",
        ),
        ("train-labels-idx1-ubyte", lambda data: data[:6], "is 6 bytes, shorter than its 8-byte header (truncated)"),
    ],
)
def test_a_bad_idx_header_names_the_file_and_the_reason(tmp_path, name, edit, complaint):
    raw = tmp_path / "MNIST" / "raw"
    write_fake_mnist(raw)
    (raw / name).write_bytes(edit((raw / name).read_bytes()))
    with pytest.raises(DatasetCorruptError) as caught:
        load_task("mnist", root=tmp_path)
    assert str(caught.value) == (
        f"MNIST file {raw / name} {complaint}; replace it with the original file (or delete it and use download=true)."
    )


@pytest.mark.parametrize("download", [False, True])
def test_a_data_root_that_is_a_file_or_under_one_is_named(tmp_path, download):
    blocker = tmp_path / "mnist.tar"
    blocker.write_bytes(b"not a folder")
    for root, where in ((blocker, "is a file, not a folder"), (blocker / "mnist", f"lies under {blocker}, a file")):
        with pytest.raises(DatasetNotFoundError) as caught:
            load_task("mnist", root=root, download=download)
        assert str(caught.value) == (
            f"MNIST not found: the data root {root} {where}; set data.root (the library's "
            f"root=) to the folder that holds MNIST/raw/"
        )
    assert sorted(tmp_path.iterdir()) == [blocker]


def test_failed_download_leaves_no_partial_files(tmp_path, monkeypatch):
    def broken_download(self):
        Path(self.raw_folder).mkdir(parents=True, exist_ok=True)
        (Path(self.raw_folder) / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: connection refused")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", broken_download)
    root = tmp_path / "data" / "mnist"
    with pytest.raises(DatasetNotFoundError) as caught:
        load_task("mnist", root=root, download=True)
    assert "download failed" in str(caught.value) and "connection refused" in str(caught.value)
    assert str(root / "MNIST" / "raw") in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_download_moves_complete_files_into_place(tmp_path, monkeypatch):
    def fake_download(self):
        write_fake_mnist(Path(self.raw_folder), num_train=30, num_test=5)

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fake_download)
    task = load_task("mnist", root=tmp_path, download=True)
    assert (len(task.train), len(task.val), len(task.test)) == (25, 5, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MNIST"]
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == sorted(MNIST_FILES)
