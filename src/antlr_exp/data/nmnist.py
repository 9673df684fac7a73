"""N-MNIST (paper section 4.3): 2x34x34 event frames in 1 ms bins over the first 300 ms.

Where the recordings come from, in this order, for each of Train and Test:

1. tonic's full download, ``<root>/NMNIST/{train,test}.zip`` with the extracted folder (the
   check ``tonic.datasets.NMNIST`` itself makes: archive present, at least 10,000 recordings):
   listed through ``tonic.datasets.NMNIST``.
2. The original layout ``<root>/Train/<digit>/<id>.bin`` (or ``<root>/NMNIST/Train/...``), any
   number of recordings, e.g. the 1,000/100 offline subset: listed from the folders, never
   downloaded (``download=True`` is ignored with a warning; the folder may be read-only).
3. With ``download=True``: ``tonic.datasets.NMNIST`` downloads into a staging folder that is moved
   to ``<root>/NMNIST`` only on success.

Every recording is decoded with tonic's reader ``tonic.io.read_mnist_file`` after a size check,
and framed with ``tonic.transforms.ToFrame``. ``first_saccade_only`` keeps the events with
t < 100 ms, the rule ``tonic.datasets.NMNIST`` applies.

Frames: step k covers event times [k * bin_us, (k + 1) * bin_us) microseconds, k = 0..T-1; a
frame pixel is 1 when at least one event of that polarity hit that pixel in the bin. Events at
or after T * bin_us are dropped; a recording that ends earlier gets empty trailing frames.
Layout ``[T, 2, 34, 34]`` = (step, polarity, y, x), tonic's frame order. (The authors' code
indexes ``[t, p, x, y]``; a transposed image makes no difference to a fully connected network.)

Splits: validation is ``n // 6`` of the training recordings drawn by a seeded permutation
(10,000 of 60,000; 166 of the 1,000 offline ones), training the rest; test is the Test folder.
``limit_train`` keeps the first ``limit_train`` training recordings of that permutation,
``limit_test`` the first ``limit_test`` validation recordings and a seeded random subset of the
test recordings. Only the recordings kept are read.

Cache: the frames of each source folder are stored on disk as the flat indices of their
non-zero entries (int32, one index per active (t, p, y, x), about 16 kB per recording), in
``<cache_dir>/nmnist-<split>-<key>.npz``. The key hashes every framing parameter (T, bin_us,
first_saccade_only), the split, the list of recordings with their sizes and modification
times (nanoseconds), the tonic version and a format number, so changing any of them, or
rewriting a recording even at the same size, never reuses stale frames. Files are written
atomically (:mod:`antlr_exp.data.cache`, shared with SHD). ``cache_stats()`` counts hits and misses.
"""

from __future__ import annotations

import itertools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from antlr_exp.data.cache import (  # noqa: F401  (EventFrames, FrameStore, the stats: their old home)
    EventFrames,
    FrameStore,
    cache_key,
    cache_stats,
    cached_frames,
    flat_indices,
    reset_cache_stats,
)
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
from antlr_exp.errors import ConfigError, DatasetNotFoundError

#: tonic's sensor size (x, y, polarity).
SENSOR_SIZE = (34, 34, 2)
#: Shape of one frame: (polarity, y, x).
FRAME_SHAPE = (2, 34, 34)
FRAME_SIZE = 2 * 34 * 34
#: End of the first saccade (microseconds), as in tonic.datasets.NMNIST.
FIRST_SACCADE_US = 100_000
#: Bytes per event in a .bin recording.
EVENT_BYTES = 5
NUM_CLASSES = 10
#: The two source folders and whether they are tonic's train split.
SPLIT_FOLDERS = {"Train": True, "Test": False}
#: tonic accepts an extracted split only with at least this many recordings.
TONIC_MINIMUM_RECORDINGS = 10_000


@dataclass(frozen=True)
class Recording:
    """One N-MNIST recording file.

    Attributes:
        path: the .bin file.
        relpath: path relative to its split folder, e.g. ``"5/00001.bin"``.
        label: digit 0..9 (the name of its folder).
        size: file size in bytes.
        mtime_ns: modification time in nanoseconds (with ``size``, what the frame cache's key
            knows of the file's contents).
    """

    path: Path
    relpath: str
    label: int
    size: int
    mtime_ns: int = 0


# ---------------------------------------------------------------- reading and framing


def read_recording(path: str | os.PathLike) -> np.ndarray:
    """Decode one N-MNIST .bin file with ``tonic.io.read_mnist_file``, after checking it.

    Format: 5 bytes per event: x, y, then polarity (bit 7) and a 23-bit timestamp in
    microseconds, big-endian.

    Returns:
        structured array [num_events] with int64 fields x, y (pixels, 0..33), t (microseconds),
        p (polarity 0/1), in file order.

    Raises:
        DatasetCorruptError: empty file, size not a multiple of 5, or a coordinate outside 0..33.
        DatasetNotFoundError: the file cannot be opened.
    """
    import tonic  # imported on first use: importing tonic takes seconds

    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise DatasetNotFoundError(f"N-MNIST recording {path} cannot be read: {error}") from None
    if size == 0 or size % EVENT_BYTES:
        raise DatasetCorruptError(
            f"N-MNIST recording {path} is corrupt: {size} bytes, expected a non-zero multiple of "
            f"{EVENT_BYTES} (5 bytes per event); replace it with the original file"
        )
    events = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
    outside = (events["x"] >= SENSOR_SIZE[0]) | (events["y"] >= SENSOR_SIZE[1])
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise DatasetCorruptError(
            f"N-MNIST recording {path} is corrupt: event {first} has x={events['x'][first]}, "
            f"y={events['y'][first]}; expected coordinates in 0..33; replace it with the "
            f"original file"
        )
    return events


def frame_events(events: np.ndarray, *, num_steps: int, bin_us: int, first_saccade_only: bool = False) -> np.ndarray:
    """Binary frames of an event recording, built with ``tonic.transforms.ToFrame``.

    Args:
        events: structured array with fields x, y, t (microseconds), p, as from
            ``read_recording``.
        num_steps: T, the number of frames.
        bin_us: width of one frame (microseconds); frame k covers [k * bin_us, (k+1) * bin_us).
        first_saccade_only: keep only events with t < 100,000 us.

    Returns:
        bool array [T, 2, 34, 34] indexed (step, polarity, y, x): True where at least one event
        fell. Exactly T frames, empty where the recording has no events.
    """
    import tonic  # imported on first use: importing tonic takes seconds

    end_us = num_steps * bin_us
    keep = events["t"] < end_us
    if first_saccade_only:
        keep &= events["t"] < FIRST_SACCADE_US
    events = events[keep]
    frames = np.zeros((num_steps, *FRAME_SHAPE), dtype=bool)
    if len(events) == 0:
        return frames
    if np.any(np.diff(events["t"]) < 0):  # ToFrame slices with searchsorted: needs sorted times
        events = events[np.argsort(events["t"], kind="stable")]
    to_frame = tonic.transforms.ToFrame(sensor_size=SENSOR_SIZE, time_window=bin_us, start_time=0, end_time=end_us)
    counts = to_frame(events)  # [n, P, H, W]; n == T when start and end times are given
    available = min(num_steps, counts.shape[0])
    frames[:available] = counts[:available] > 0
    return frames


# ---------------------------------------------------------------- finding the recordings


def _stat(path: Path) -> os.stat_result:
    """``path.stat()``, or DatasetCorruptError naming the file (a broken link, a loop of links)."""
    try:
        return path.stat()
    except OSError as error:
        raise DatasetCorruptError(
            f"N-MNIST recording {path} cannot be read ({error.strerror or error}); replace it with the original file"
        ) from None


def _scan_original_layout(folder: Path) -> list[Recording]:
    """Recordings in ``folder/<digit>/*.bin``, sorted by (digit, file name)."""
    recordings = []
    for digit in range(NUM_CLASSES):
        digit_folder = folder / str(digit)
        if not digit_folder.is_dir():
            continue
        for path in sorted(digit_folder.glob("*.bin")):
            stat = _stat(path)
            recordings.append(
                Recording(
                    path=path, relpath=f"{digit}/{path.name}", label=digit, size=stat.st_size, mtime_ns=stat.st_mtime_ns
                )
            )
    return recordings


def _tonic_location(root: Path) -> Path:
    return root / "NMNIST"


def _tonic_names(train: bool) -> tuple[str, str]:
    """(archive file name, extracted folder name) of a tonic N-MNIST split."""
    import tonic  # imported on first use: importing tonic takes seconds

    cls = tonic.datasets.NMNIST
    return (cls.train_filename, cls.train_folder) if train else (cls.test_filename, cls.test_folder)


def _tonic_present(root: Path, train: bool) -> bool:
    """The check tonic.datasets.NMNIST makes before deciding to download, without instantiating
    it (instantiating downloads when the check fails)."""
    archive, folder = _tonic_names(train)
    location = _tonic_location(root)
    if not (location / archive).is_file():
        return False
    found = itertools.islice((location / folder).glob("**/*.bin"), TONIC_MINIMUM_RECORDINGS)
    return sum(1 for _ in found) >= TONIC_MINIMUM_RECORDINGS


def _tonic_recordings(root: Path, train: bool) -> list[Recording]:
    """The recordings tonic.datasets.NMNIST lists for one split (which must be present)."""
    import tonic  # imported on first use: importing tonic takes seconds

    dataset = tonic.datasets.NMNIST(save_to=str(root), train=train)
    folder = _tonic_location(root) / _tonic_names(train)[1]
    recordings = []
    for name, label in zip(dataset.data, dataset.targets, strict=True):
        path = Path(name)
        stat = _stat(path)
        recordings.append(
            Recording(
                path=path,
                relpath=path.relative_to(folder).as_posix(),
                label=int(label),
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
            )
        )
    return recordings


def _not_found_message(root: Path, missing: list[str], extra: str = "") -> str:
    where = root.resolve()
    state = "" if where.is_dir() else " (the folder does not exist)"
    return (
        f"N-MNIST not found: looked in {where}{state} for {' and '.join(missing)} recordings in "
        f"the original N-MNIST layout ({' and '.join(f'{s}/<digit>/<id>.bin' for s in missing)}, "
        f"e.g. Train/5/00001.bin, also accepted under NMNIST/) or tonic's download (NMNIST/"
        f"train.zip, NMNIST/test.zip and their extracted Train/ and Test/).{extra} To obtain "
        f"them: set download=true on a machine with internet access (tonic fetches the full "
        f"dataset, about 1 GB, into {where / 'NMNIST'}), or download Train.zip and Test.zip from "
        f"https://www.garrickorchard.com/datasets/n-mnist and unzip them into {where}."
    )


def _download(root: Path, split: str) -> None:
    """Download one split with tonic into a staging folder, then move it into ``root/NMNIST``."""
    import tonic  # imported on first use: importing tonic takes seconds

    train = SPLIT_FOLDERS[split]
    location = _tonic_location(root)
    created = [folder for folder in (location, root, *root.parents) if not folder.exists()]
    try:
        location.mkdir(parents=True, exist_ok=True)
        with staging_dir(location, ".download-") as staging:
            try:
                tonic.datasets.NMNIST(save_to=str(staging), train=train)
            except Exception as error:  # network errors, checksum mismatch, bad archive...
                message = " ".join(str(error).split())
                raise DatasetNotFoundError(
                    _not_found_message(root, [split], f" The download failed: {type(error).__name__}: {message}.")
                ) from None
            for entry in sorted((staging / "NMNIST").iterdir()):
                target = location / entry.name
                if target.is_dir():
                    raise DatasetNotFoundError(
                        f"N-MNIST download finished but {target} is in the way (it holds no "
                        f"usable recordings); remove it and load again"
                    )
                os.replace(entry, target)
    except BaseException as error:
        remove_empty_folders(created)
        if isinstance(error, OSError) and not isinstance(error, DatasetNotFoundError):
            raise DatasetNotFoundError(
                _not_found_message(  # root not writable, disk full...
                    root, [split], f" Could not download into {location.resolve()}: {error}."
                )
            ) from None
        raise


def find_recordings(root: str | os.PathLike, download: bool = False) -> dict[str, list[Recording]]:
    """List the Train and Test recordings under ``root`` (see the module docstring for the order
    of sources), downloading them with tonic when missing and ``download`` is true.

    Returns:
        ``{"Train": [...], "Test": [...]}``, each a list of Recording sorted by (digit, file).

    Raises:
        DatasetNotFoundError: a split is missing (the message names the folder looked at, the
            files expected and how to obtain them), or the download failed.
    """
    root = Path(root).expanduser()
    check_root_is_folder(root, "N-MNIST", "Train/ and Test/ (or NMNIST/)")
    found: dict[str, list[Recording]] = {}
    missing = []
    for split, train in SPLIT_FOLDERS.items():
        if _tonic_present(root, train):
            found[split] = _tonic_recordings(root, train)
            continue
        for folder in (root / split, _tonic_location(root) / split):
            recordings = _scan_original_layout(folder)
            if recordings:
                if download:
                    warnings.warn(
                        f"N-MNIST: using the {len(recordings)} recordings found in "
                        f"{folder}; download=true is ignored for this folder",
                        stacklevel=3,
                    )
                found[split] = recordings
                break
        else:
            if download:
                _download(root, split)
                found[split] = _tonic_recordings(root, train)
            else:
                missing.append(split)
    if missing:
        raise DatasetNotFoundError(_not_found_message(root, missing))
    return found


# ---------------------------------------------------------------- cached frames


def _cache_key(split: str, recordings: list[Recording], num_steps: int, bin_us: int, first_saccade_only: bool) -> str:
    payload = {
        "split": split,
        "num_steps": num_steps,
        "bin_us": bin_us,
        "first_saccade_only": first_saccade_only,
        "recordings": [[r.relpath, r.size, r.mtime_ns] for r in recordings],
    }
    return cache_key(payload)


def _build_frames(
    recordings: list[Recording], num_steps: int, bin_us: int, first_saccade_only: bool, split: str
) -> tuple[np.ndarray, np.ndarray]:
    framed = (
        frame_events(read_recording(r.path), num_steps=num_steps, bin_us=bin_us, first_saccade_only=first_saccade_only)
        for r in tqdm(recordings, desc=f"Framing N-MNIST {split}", disable=None, leave=False)
    )
    return flat_indices(framed, len(recordings))


def frames_for(
    split: str,
    recordings: list[Recording],
    *,
    num_steps: int,
    bin_us: int,
    first_saccade_only: bool,
    cache_dir: str | os.PathLike | None,
) -> FrameStore:
    """Frames of ``recordings`` (one split folder), from the disk cache or built and cached
    (:mod:`antlr_exp.data.cache`). A cache that cannot be written gives a warning, not an error."""
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    key = _cache_key(split, recordings, num_steps, bin_us, first_saccade_only)
    labels = np.array([r.label for r in recordings], dtype=np.int64)
    indices, offsets, from_cache = cached_frames(
        cache_dir / f"nmnist-{split.lower()}-{key}.npz",
        labels,
        num_steps * FRAME_SIZE,
        lambda: _build_frames(recordings, num_steps, bin_us, first_saccade_only, split),
        "N-MNIST",
    )
    return FrameStore(
        indices=torch.from_numpy(indices),
        offsets=torch.from_numpy(offsets),
        labels=torch.from_numpy(labels),
        paths=[str(r.path) for r in recordings],
        num_steps=num_steps,
        from_cache=from_cache,
        frame_shape=FRAME_SHAPE,
    )


def load_nmnist(
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
    num_steps: int = 300,
    bin_us: int = 1000,
    first_saccade_only: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> TaskData:
    """N-MNIST as binary event frames in a TaskData.

    Args:
        root: folder holding the recordings (default ``data/nmnist``, relative to the current
            directory); see the module docstring for the layouts accepted.
        download: fetch a missing split with tonic (needs internet; about 1 GB).
        limit_train: keep at most this many training recordings.
        limit_test: keep at most this many validation and this many test recordings.
        seed: the trial; decides the train/validation split and the subsets.
        num_steps: T, number of frames.
        bin_us: frame width (microseconds); the window is [0, T * bin_us).
        first_saccade_only: keep only events before 100 ms.
        cache_dir: frame cache folder (default ``$ANTLR_EXP_CACHE`` or ``~/.cache/antlr-exp``).

    Returns:
        TaskData with ``input_shape=(2, 34, 34)``, ``num_outputs=10``, ``target_kind="label"``.
    """
    num_steps = check_int("num_steps", num_steps, minimum=1, maximum=(2**31 - 1) // FRAME_SIZE)
    bin_us = check_int("bin_us", bin_us, minimum=1)
    if not isinstance(first_saccade_only, bool):
        raise ConfigError(f"first_saccade_only={first_saccade_only!r} is not a boolean; expected true or false")
    limit_train = check_limit("limit_train", limit_train)
    limit_test = check_limit("limit_test", limit_test)
    recordings = find_recordings(Path("data/nmnist") if root is None else root, download)
    framing = {
        "num_steps": num_steps,
        "bin_us": bin_us,
        "first_saccade_only": first_saccade_only,
        "cache_dir": cache_dir,
    }

    train_recordings = recordings["Train"]
    train_ids, val_ids = split_train_val(len(train_recordings), seed, "nmnist/split")
    train_ids, val_ids = take_prefix(train_ids, limit_train), take_prefix(val_ids, limit_test)
    needed = torch.cat([train_ids, val_ids]).sort().values
    train_store = frames_for("Train", [train_recordings[i] for i in needed.tolist()], **framing)
    row_of = torch.full((len(train_recordings),), -1, dtype=torch.int64)
    row_of[needed] = torch.arange(len(needed))

    test_recordings = recordings["Test"]
    test_ids = seeded_subset(len(test_recordings), limit_test, seed, "nmnist/test-subset")
    test_store = frames_for("Test", [test_recordings[i] for i in test_ids.tolist()], **framing)

    return TaskData(
        train=EventFrames(train_store, row_of[train_ids]),
        val=EventFrames(train_store, row_of[val_ids]),
        test=EventFrames(test_store, torch.arange(len(test_ids))),
        input_shape=FRAME_SHAPE,
        num_steps=num_steps,
        num_outputs=NUM_CLASSES,
        target_kind="label",
    )
