"""The Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC), read through tonic.

Files: tonic's layout, the HDF5 files ``tonic.datasets.SHD`` (``SSC``) downloads and extracts:
``<root>/SHD/shd_train.h5`` and ``shd_test.h5`` (``<root>/SSC/ssc_train.h5``, ``ssc_valid.h5``,
``ssc_test.h5``); the ``.zip`` archives next to them may be there or not. With ``download=True``
tonic downloads (and checks) a missing file into a staging folder, moved into place only when
complete. Each file holds ``spikes/times`` (seconds), ``spikes/units`` (channel 0..699) and
``labels`` per sample, and ``extra/keys``, ``extra/speaker`` (which tonic reads on opening).

Each sample is read with tonic's reader (``tonic.datasets.SHD``: its times in microseconds,
truncated to integers) and framed with ``tonic.transforms.ToFrame``: step k covers
``[k * bin_us, (k + 1) * bin_us)`` microseconds, k = 0..T-1; a frame entry is 1 when its channel
spiked at least once in the bin; spikes at or after ``T * bin_us`` are dropped. Items are
``[T, 700]``.

Splits: SHD's validation is ``n // 6`` of the training file by a seeded permutation, the rest
trains; SSC has its own validation file. ``limit_train`` and ``limit_test`` keep seeded subsets,
and only the samples kept are read. Frames are cached as N-MNIST's are (:mod:`.cache`), keyed on
the file's size and modification time, the samples, T, ``bin_us`` and the tonic version.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from antlr_exp.data.cache import EventFrames, FrameStore, cache_key, cached_frames, flat_indices
from antlr_exp.data.common import (
    DatasetCorruptError,
    TaskData,
    check_int,
    check_limit,
    check_root_is_folder,
    default_cache_dir,
    remove_empty_folders,
    seeded_subset,
    split_train_val,
    staging_dir,
    take_prefix,
)
from antlr_exp.errors import DatasetNotFoundError

#: Cochlea channels of both datasets (tonic's sensor size (700, 1, 1)).
CHANNELS = 700


@dataclass(frozen=True)
class SpikingAudio:
    """One of the two datasets: tonic's class, its files by split, its classes."""

    name: str  # shd | ssc
    tonic: str  # tonic's class, and the folder under the root
    splits: tuple  # the files' splits: train, (valid,) test
    num_classes: int

    def file(self, split: str) -> str:
        return f"{self.name}_{split}.h5"


SHD = SpikingAudio("shd", "SHD", ("train", "test"), 20)
SSC = SpikingAudio("ssc", "SSC", ("train", "valid", "test"), 35)


def _tonic_dataset(audio: SpikingAudio, root: Path, split: str):
    """tonic's dataset of one file, which must be there: its own check also wants the .zip archive,
    and it downloads where that check fails, so the check here is the file itself."""
    import tonic  # imported on first use: importing tonic takes seconds

    base = getattr(tonic.datasets, audio.tonic)
    present = type(base.__name__, (base,), {"_check_exists": lambda self: True})  # the same folder name
    arguments = {"train": split == "train"} if audio.tonic == "SHD" else {"split": split}
    path = root / audio.tonic / audio.file(split)
    try:
        return present(save_to=str(root), **arguments)
    except (OSError, KeyError, ValueError) as error:
        raise _corrupt(audio, path, f"tonic cannot open it ({type(error).__name__}: {error})") from None


def _corrupt(audio: SpikingAudio, path: Path, what: str) -> DatasetCorruptError:
    what = " ".join(str(what).split())
    return DatasetCorruptError(
        f"{audio.tonic} file {path} is corrupt: {what}; replace it with the original file (or remove it and "
        f"load with data.download=true)"
    )


def _not_found(audio: SpikingAudio, root: Path, missing: list, extra: str = "") -> str:
    where = root.resolve() / audio.tonic
    state = "" if where.is_dir() else " (the folder does not exist)"
    names = " and ".join(audio.file(split) for split in missing)
    return (
        f"{audio.tonic} not found: looked in {where}{state} for {names} (tonic's layout).{extra} To obtain them: "
        f"set data.download=true on a machine with internet access (tonic fetches them into {where}), or "
        f"download {' and '.join(f'{audio.file(s)}.zip' for s in missing)} from https://zenkelab.org/datasets/ "
        f"and unzip them into {where}."
    )


def _download(audio: SpikingAudio, root: Path, split: str) -> None:
    """Download one file with tonic into a staging folder, then move it (and its archive) into place."""
    import tonic  # imported on first use: importing tonic takes seconds

    location = root / audio.tonic
    created = [folder for folder in (location, root, *root.parents) if not folder.exists()]
    try:
        location.mkdir(parents=True, exist_ok=True)
        with staging_dir(location, ".download-") as staging:
            arguments = {"train": split == "train"} if audio.tonic == "SHD" else {"split": split}
            try:
                getattr(tonic.datasets, audio.tonic)(save_to=str(staging), **arguments)
            except Exception as error:  # network errors, checksum mismatch, bad archive...
                message = " ".join(str(error).split())
                raise DatasetNotFoundError(
                    _not_found(audio, root, [split], f" The download failed: {type(error).__name__}: {message}.")
                ) from None
            for name in (f"{audio.file(split)}.zip", audio.file(split)):
                os.replace(staging / audio.tonic / name, location / name)
    except BaseException as error:
        remove_empty_folders(created)
        if isinstance(error, OSError) and not isinstance(error, DatasetNotFoundError):
            extra = f" Could not download into {location.resolve()}: {error}."  # not writable, disk full...
            raise DatasetNotFoundError(_not_found(audio, root, [split], extra)) from None
        raise


def find_files(audio: SpikingAudio, root: str | os.PathLike, download: bool = False) -> dict:
    """``{split: path}`` of the dataset's files under ``root`` (downloaded where missing and
    ``download``); DatasetNotFoundError naming the files, the folder and how to obtain them."""
    root = Path(root).expanduser()
    check_root_is_folder(root, audio.tonic, f"{audio.tonic}/ with {' and '.join(map(audio.file, audio.splits))}")
    missing = [split for split in audio.splits if not (root / audio.tonic / audio.file(split)).is_file()]
    if missing and download:
        for split in missing:
            _download(audio, root, split)
    elif missing:
        raise DatasetNotFoundError(_not_found(audio, root, missing))
    return {split: root / audio.tonic / audio.file(split) for split in audio.splits}


def read_labels(audio: SpikingAudio, path: Path) -> np.ndarray:
    """int64 labels of a file, after checking its layout (the datasets tonic reads, one entry per
    sample in each, labels in ``0..num_classes-1``)."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            sizes = {key: len(file[key]) for key in ("spikes/times", "spikes/units", "labels")}
            labels = np.asarray(file["labels"][()], dtype=np.int64)
            for key in ("extra/keys", "extra/speaker"):
                file[key]  # noqa: B018  (tonic reads them when it opens the file)
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise _corrupt(audio, path, f"{type(error).__name__}: {error}") from None
    if len(set(sizes.values())) != 1:
        raise _corrupt(audio, path, f"its datasets hold different numbers of samples ({sizes})")
    outside = (labels < 0) | (labels >= audio.num_classes)
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise _corrupt(audio, path, f"sample {index} has label {labels[index]}, expected 0..{audio.num_classes - 1}")
    return labels


def frame_events(events: np.ndarray, *, num_steps: int, bin_us: int) -> np.ndarray:
    """bool ``[T, 700]`` frames of one sample's events (fields t in microseconds, x the channel,
    p), built with ``tonic.transforms.ToFrame`` (see the module docstring)."""
    import tonic  # imported on first use: importing tonic takes seconds

    end_us = num_steps * bin_us
    events = events[events["t"] < end_us]
    frames = np.zeros((num_steps, CHANNELS), dtype=bool)
    if len(events) == 0:
        return frames
    if np.any(np.diff(events["t"]) < 0):  # ToFrame slices with searchsorted: needs sorted times
        events = events[np.argsort(events["t"], kind="stable")]
    to_frame = tonic.transforms.ToFrame(sensor_size=(CHANNELS, 1, 1), time_window=bin_us, start_time=0, end_time=end_us)
    counts = to_frame(events)  # [n, 1, 700]; n == T when start and end times are given
    available = min(num_steps, counts.shape[0])
    frames[:available] = counts[:available].reshape(available, CHANNELS) > 0
    return frames


def _sample_frames(audio: SpikingAudio, dataset, path: Path, index: int, num_steps: int, bin_us: int) -> np.ndarray:
    try:
        events, _ = dataset[index]
    except (OSError, KeyError, ValueError, IndexError) as error:
        raise _corrupt(audio, path, f"sample {index} cannot be read ({type(error).__name__}: {error})") from None
    bad = (events["t"] < 0) | (events["x"] < 0) | (events["x"] >= CHANNELS)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise _corrupt(
            audio,
            path,
            f"sample {index} has a spike at unit {events['x'][first]}, time {events['t'][first]} us; expected units "
            f"0..{CHANNELS - 1} at finite times >= 0",
        )
    return frame_events(events, num_steps=num_steps, bin_us=bin_us)


def frames_for(
    audio: SpikingAudio,
    root: Path,
    split: str,
    samples: torch.Tensor,
    labels: np.ndarray,
    *,
    num_steps,
    bin_us,
    cache_dir,
) -> FrameStore:
    """The frames of ``samples`` (indices into the file of ``split``), from the cache or built."""
    path = root / audio.tonic / audio.file(split)
    stat = path.stat()
    ids = samples.tolist()
    payload = {"dataset": audio.name, "split": split, "file": [path.name, stat.st_size, stat.st_mtime_ns]}
    key = cache_key({**payload, "samples": ids, "num_steps": num_steps, "bin_us": bin_us})
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    kept = labels[ids].astype(np.int64) if ids else np.zeros(0, dtype=np.int64)

    def build():
        dataset = _tonic_dataset(audio, root, split)
        desc = f"Framing {audio.tonic} {split}"
        framed = (
            _sample_frames(audio, dataset, path, i, num_steps, bin_us) for i in tqdm(ids, desc=desc, disable=None)
        )
        return flat_indices(framed, len(ids))

    indices, offsets, from_cache = cached_frames(
        cache_dir / f"{audio.name}-{split}-{key}.npz", kept, num_steps * CHANNELS, build, audio.tonic
    )
    return FrameStore(
        indices=torch.from_numpy(indices),
        offsets=torch.from_numpy(offsets),
        labels=torch.from_numpy(kept),
        paths=[f"{path}#{i}" for i in ids],
        num_steps=num_steps,
        from_cache=from_cache,
        frame_shape=(CHANNELS,),
    )


def load_spiking_audio(
    audio: SpikingAudio,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
    num_steps: int = 100,
    bin_us: int = 10_000,
    cache_dir: str | os.PathLike | None = None,
) -> TaskData:
    """SHD or SSC (``audio``) as binary ``[T, 700]`` frames in a TaskData: T steps of ``bin_us``
    microseconds (default the first second in 10 ms steps); ``root`` holds tonic's ``SHD/`` (or
    ``SSC/``) folder, default ``data/shd`` (``data/ssc``); see the module docstring."""
    num_steps = check_int("num_steps", num_steps, minimum=1, maximum=(2**31 - 1) // CHANNELS)
    bin_us = check_int("bin_us", bin_us, minimum=1)
    limit_train, limit_test = check_limit("limit_train", limit_train), check_limit("limit_test", limit_test)
    root = Path(f"data/{audio.name}" if root is None else root).expanduser()
    files = find_files(audio, root, download)
    labels = {split: read_labels(audio, path) for split, path in files.items()}
    framing = {"num_steps": num_steps, "bin_us": bin_us, "cache_dir": cache_dir}

    def whole(split: str, ids: torch.Tensor) -> EventFrames:
        return EventFrames(frames_for(audio, root, split, ids, labels[split], **framing), torch.arange(len(ids)))

    if "valid" in labels:  # SSC: its own validation file
        train = whole("train", seeded_subset(len(labels["train"]), limit_train, seed, f"{audio.name}/train-subset"))
        val = whole("valid", seeded_subset(len(labels["valid"]), limit_test, seed, f"{audio.name}/val-subset"))
    else:  # SHD: validation held out of the training file
        train_ids, val_ids = split_train_val(len(labels["train"]), seed, f"{audio.name}/split")
        train_ids, val_ids = take_prefix(train_ids, limit_train), take_prefix(val_ids, limit_test)
        needed = torch.cat([train_ids, val_ids]).sort().values
        store = frames_for(audio, root, "train", needed, labels["train"], **framing)
        row_of = torch.full((len(labels["train"]),), -1, dtype=torch.int64)
        row_of[needed] = torch.arange(len(needed))
        train, val = EventFrames(store, row_of[train_ids]), EventFrames(store, row_of[val_ids])
    test = whole("test", seeded_subset(len(labels["test"]), limit_test, seed, f"{audio.name}/test-subset"))
    return TaskData(
        train=train,
        val=val,
        test=test,
        input_shape=(CHANNELS,),
        num_steps=num_steps,
        num_outputs=audio.num_classes,
        target_kind="label",
    )


#: ``load_shd(root=..., ...)``: SHD, 20 classes; ``load_ssc``: SSC, 35 classes, its own
#: validation file; the arguments as ``load_spiking_audio``'s.
load_shd = functools.partial(load_spiking_audio, SHD)
load_ssc = functools.partial(load_spiking_audio, SSC)
