"""Latency-coded MNIST (paper section 4.2): 784 inputs, one spike per non-zero pixel, T = 100.

The raw IDX files are read through ``torchvision.datasets.MNIST`` (its ``.data`` / ``.targets``
tensors, no PIL), encoded all at once with ``latency_encode`` and kept in memory as one uint8
spike time per pixel (784 bytes per image); items are expanded to dense [T, 784] on access.

Splits: validation is ``n // 6`` of the training images drawn by a seeded permutation (10,000 of
60,000; 4,057 of the 24,345 in the offline copy), training the rest; test is the official test
set. ``limit_train`` keeps a seeded random subset of the training split, ``limit_test`` of the
validation split and of the test set.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import torch
from torch.utils.data import Dataset

from antlr_exp.data.common import (
    DatasetCorruptError,
    TaskData,
    check_int,
    check_limit,
    check_root_is_folder,
    remove_empty_folders,
    seeded_subset,
    split_train_val,
    staging_dir,
    take_prefix,
)
from antlr_exp.data.encoding import SILENT, latency_encode, spike_times_to_dense
from antlr_exp.errors import ConfigError, DatasetNotFoundError

#: The four files torchvision reads, in ``<root>/MNIST/raw/``.
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGE_SIZE = 28
NUM_CLASSES = 10
#: The IDX magic numbers of the MNIST files: unsigned bytes (0x08) in 3 dimensions (images) or 1 (labels).
IDX_MAGIC = {"images": 0x0803, "labels": 0x0801}


def raw_folder(root: Path) -> Path:
    """Where torchvision keeps the MNIST files under ``root``: ``root/MNIST/raw``."""
    return root / "MNIST" / "raw"


def _missing_message(root: Path, missing: list[str], extra: str = "") -> str:
    folder = raw_folder(root).resolve()
    return (
        f"MNIST not found: looked in {folder} for {', '.join(MNIST_FILES)} "
        f"(missing: {', '.join(missing)}).{extra} To obtain them: set download=true on a machine "
        f"with internet access (torchvision fetches them into {folder}), or copy the four "
        f"uncompressed MNIST files there."
    )


def _download(root: Path, missing: list[str]) -> None:
    """Fetch the MNIST files with torchvision into a staging folder inside ``root`` and move the
    missing ones into ``root/MNIST/raw`` only after the whole download succeeded."""
    import torchvision  # imported on first use: importing torchvision takes seconds

    created = [folder for folder in (root, *root.parents) if not folder.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
        with staging_dir(root, ".mnist-download-") as staging:
            try:
                torchvision.datasets.MNIST(str(staging), train=True, download=True)
            except Exception as error:  # network errors, checksum mismatch, disk full...
                message = " ".join(str(error).split())
                raise DatasetNotFoundError(
                    _missing_message(root, missing, f" The download failed: {message}.")
                ) from None
            destination = raw_folder(root)
            destination.mkdir(parents=True, exist_ok=True)
            for name in missing:
                os.replace(raw_folder(staging) / name, destination / name)
    except BaseException as error:
        remove_empty_folders(created)
        if isinstance(error, OSError) and not isinstance(error, DatasetNotFoundError):
            raise DatasetNotFoundError(
                _missing_message(  # root not writable, disk full, ...
                    root, missing, f" Could not download into {root.resolve()}: {error}."
                )
            ) from None
        raise


def _check_idx(path: Path, magic: int) -> None:
    """DatasetCorruptError naming ``path`` and what is wrong with its IDX header: the magic
    number, or a size other than the header's dimensions say (torchvision only asserts these)."""
    dims = magic & 0xFF
    header_size = 4 * (1 + dims)
    try:
        with open(path, "rb") as stream:
            header = stream.read(header_size)
        size = path.stat().st_size
    except OSError as error:
        problem = f"cannot be read ({error.strerror or error})"
    else:
        found, *shape = struct.unpack(f">{1 + dims}I", header) if len(header) == header_size else (None,)
        expected = header_size + math.prod(shape)
        if found is None:
            problem = f"is {size} bytes, shorter than its {header_size}-byte header (truncated)"
        elif found != magic:
            problem = (
                f"starts with the magic number {found}; expected {magic} (an IDX file of unsigned bytes "
                f"in {dims} dimension{'s' if dims > 1 else ''})"
            )
        elif size != expected:
            shown = " x ".join(map(str, shape))
            problem = (
                f"is {size} bytes, but its header announces {shown} values ({expected} bytes with the "
                f"header): {'truncated' if size < expected else 'extra bytes at the end'}"
            )
        else:
            return
    raise DatasetCorruptError(
        f"MNIST file {path.resolve()} {problem}; replace it with the original file (or delete it and use "
        f"download=true)."
    )


def _read_split(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N, 28, 28] and labels int64 [N] of one split, checked for consistency."""
    import torchvision  # imported on first use: importing torchvision takes seconds

    split = "train" if train else "t10k"
    for kind, magic in IDX_MAGIC.items():
        _check_idx(raw_folder(root) / f"{split}-{kind}-idx{magic & 0xFF}-ubyte", magic)
    try:
        dataset = torchvision.datasets.MNIST(str(root), train=train, download=False)
        images, labels = dataset.data, dataset.targets
    except Exception as error:  # torchvision raises RuntimeError, ValueError or AssertionError
        raise DatasetCorruptError(
            f"MNIST files {split}-images-idx3-ubyte / {split}-labels-idx1-ubyte in "
            f"{raw_folder(root).resolve()} could not be read ({type(error).__name__}: {error}); "
            f"replace them with the original files (or delete them and use download=true)."
        ) from None
    if (
        images.dtype != torch.uint8
        or images.dim() != 3
        or tuple(images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE)
        or labels.shape != (images.shape[0],)
        or (labels.numel() > 0 and not 0 <= int(labels.min()) <= int(labels.max()) < NUM_CLASSES)
    ):
        raise DatasetCorruptError(
            f"MNIST files {split}-images-idx3-ubyte / {split}-labels-idx1-ubyte in "
            f"{raw_folder(root).resolve()} hold images {tuple(images.shape)} and labels "
            f"{tuple(labels.shape)}; expected uint8 images [N, 28, 28] and N labels in 0..9."
        )
    return images, labels.to(torch.int64)


def read_mnist(root: str | os.PathLike, download: bool = False) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Read MNIST from ``root`` (torchvision layout ``root/MNIST/raw/<file>``).

    Missing files raise ``DatasetNotFoundError`` naming the folder, the files and how to get
    them, unless ``download`` is true: then torchvision downloads them into a staging folder
    that is moved into place only on success (a failed download leaves no partial files).
    Unreadable files raise ``DatasetCorruptError``.

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}``: uint8 [N, 28, 28] images and
        int64 [N] labels.
    """
    root = Path(root).expanduser()
    check_root_is_folder(root, "MNIST", "MNIST/raw/")
    missing = [name for name in MNIST_FILES if not (raw_folder(root) / name).is_file()]
    if missing:
        if not download:
            raise DatasetNotFoundError(_missing_message(root, missing))
        _download(root, missing)
    return {"train": _read_split(root, train=True), "test": _read_split(root, train=False)}


class LatencyMNIST(Dataset):
    """Latency-coded MNIST images stored as compact spike times.

    Args:
        spike_times: uint8 tensor [N, 784]: spike step of every pixel (row-major, index
            y * 28 + x), ``SILENT`` (255) for pixels that never fire.
        labels: int64 tensor [N], class 0..9.
        num_steps: T; every spike step must be < T.
        image_ids: int64 tensor [N]: index of each image in its source file (for tracing).

    Items: ``(inputs, label)``, float32 0/1 [T, 784] and int64 scalar tensor.
    """

    def __init__(self, spike_times: torch.Tensor, labels: torch.Tensor, num_steps: int, image_ids: torch.Tensor):
        self.spike_times = spike_times
        self.labels = labels
        self.num_steps = num_steps
        self.image_ids = image_ids

    def __len__(self) -> int:
        return int(self.labels.numel())

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return spike_times_to_dense(self.spike_times[index], self.num_steps), self.labels[index]


def load_mnist(
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
    num_steps: int = 100,
    t_max: int = 24,
) -> TaskData:
    """Latency-coded MNIST as a TaskData.

    Args:
        root: folder holding ``MNIST/raw/`` (default ``data/mnist``, relative to the current
            directory).
        download: fetch missing files with torchvision (needs internet).
        limit_train: keep at most this many training images (seeded random subset).
        limit_test: keep at most this many validation and this many test images.
        seed: the trial; decides the train/validation split and the subsets.
        num_steps: T (steps); must be >= t_max.
        t_max: latency scale (steps): a pixel of intensity x fires at floor((1 - x) * t_max).

    Returns:
        TaskData with ``input_shape=(784,)``, ``num_outputs=10``, ``target_kind="label"``.
    """
    num_steps = check_int("num_steps", num_steps, minimum=1)
    t_max = check_int("t_max", t_max, minimum=1, maximum=SILENT)
    if t_max > num_steps:
        raise ConfigError(
            f"t_max={t_max} exceeds num_steps={num_steps}; latency spikes fall in "
            f"steps 0..t_max-1, so use t_max <= num_steps"
        )
    limit_train = check_limit("limit_train", limit_train)
    limit_test = check_limit("limit_test", limit_test)
    splits = read_mnist(Path("data/mnist") if root is None else root, download=download)

    train_images, train_labels = splits["train"]
    train_times = latency_encode(train_images.reshape(len(train_images), -1), t_max)
    train_ids, val_ids = split_train_val(len(train_images), seed, "mnist/split")
    train_ids, val_ids = take_prefix(train_ids, limit_train), take_prefix(val_ids, limit_test)
    test_images, test_labels = splits["test"]
    test_ids = seeded_subset(len(test_images), limit_test, seed, "mnist/test-subset")
    test_times = latency_encode(test_images[test_ids].reshape(len(test_ids), -1), t_max)

    return TaskData(
        train=LatencyMNIST(train_times[train_ids], train_labels[train_ids], num_steps, train_ids),
        val=LatencyMNIST(train_times[val_ids], train_labels[val_ids], num_steps, val_ids),
        test=LatencyMNIST(test_times, test_labels[test_ids], num_steps, test_ids),
        input_shape=(IMAGE_SIZE * IMAGE_SIZE,),
        num_steps=num_steps,
        num_outputs=NUM_CLASSES,
        target_kind="label",
    )
