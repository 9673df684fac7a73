"""The frame cache of the event datasets (N-MNIST, SHD, SSC): binary frames stored on disk as the
flat indices of their non-zero entries, and the datasets that read them back.

A cache file ``<cache_dir>/<name>-<key>.npz`` holds ``indices`` (int32: the flat index of every
active entry of a ``[T, *frame_shape]`` block, sample after sample), ``offsets`` (int64 [N + 1]:
sample n owns ``indices[offsets[n]:offsets[n + 1]]``) and ``labels`` (int64 [N]). The key hashes
what the caller says decides the frames (its binning, the source files with their sizes and
modification times, the samples) with the tonic version and a format number, so a change to any
of them never reuses stale frames. Files are written atomically; a file that cannot be read back
as expected is rebuilt; a cache that cannot be written is a warning. ``cache_stats()`` counts hits
and misses in this process.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from antlr_exp.data.common import atomic_save_npz

#: Bump when the cache file layout or a framing rule changes.
CACHE_FORMAT = 1

_cache_counts = {"hits": 0, "misses": 0}


def cache_stats() -> dict[str, int]:
    """Frame-cache lookups in this process so far: ``{"hits": h, "misses": m}`` (one lookup per
    source split per load)."""
    return dict(_cache_counts)


def reset_cache_stats() -> None:
    """Set both cache counters back to zero."""
    _cache_counts["hits"] = 0
    _cache_counts["misses"] = 0


def cache_key(payload: dict) -> str:
    """The key of frames decided by ``payload`` (JSON-able), with the format and tonic's version."""
    import tonic  # imported on first use: importing tonic takes seconds

    payload = {"format": CACHE_FORMAT, "tonic": tonic.__version__, **payload}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _read(path: Path, labels: np.ndarray, block: int):
    """(indices, offsets) from a cache file, or None when it is absent or unusable."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            indices, offsets, stored = archive["indices"], archive["offsets"], archive["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    usable = (
        indices.dtype == np.int32
        and indices.ndim == 1
        and offsets.shape == (len(labels) + 1,)
        and offsets[0] == 0
        and offsets[-1] == len(indices)
        and np.all(np.diff(offsets) >= 0)
        and np.array_equal(stored, labels)
        and (len(indices) == 0 or (indices.min() >= 0 and indices.max() < block))
    )
    return (indices, offsets) if usable else None


def flat_indices(frames: Iterable[np.ndarray], count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, offsets)`` of ``count`` boolean frame blocks, one after the other."""
    chunks = []
    offsets = np.zeros(count + 1, dtype=np.int64)
    for n, block in enumerate(frames):
        active = np.flatnonzero(block).astype(np.int32)
        chunks.append(active)
        offsets[n + 1] = offsets[n] + len(active)
    indices = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    return indices, offsets


def cached_frames(
    cache_file: Path, labels: np.ndarray, block: int, build: Callable[[], tuple], what: str
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(indices, offsets, from_cache)`` of frame blocks of ``block`` entries each: read from
    ``cache_file``, else built by ``build()`` and written there. ``labels`` (int64) must match the
    file's; ``what`` names the frames in the warning when the cache cannot be written."""
    cached = _read(cache_file, labels, block)
    if cached is not None:
        _cache_counts["hits"] += 1
        return cached[0], cached[1], True
    _cache_counts["misses"] += 1
    indices, offsets = build()
    try:
        atomic_save_npz(cache_file, indices=indices, offsets=offsets, labels=labels)
    except OSError as error:
        warnings.warn(
            f"{what} frames could not be cached in {cache_file}: {error}; they will be rebuilt next time",
            stacklevel=3,
        )
    return indices, offsets, False


@dataclass
class FrameStore:
    """The frames of several samples in compact form.

    Attributes:
        indices: int32 tensor [total_active]: flat indices into a ``[T, *frame_shape]`` block of
            every active entry, sample after sample.
        offsets: int64 tensor [N + 1]: sample n owns ``indices[offsets[n]:offsets[n + 1]]``.
        labels: int64 tensor [N].
        paths: the N sources (a file, or ``<file>#<index>`` for a sample inside one).
        num_steps: T.
        from_cache: whether the frames were read from the disk cache.
        frame_shape: the shape of one frame, e.g. ``(2, 34, 34)``.
    """

    indices: torch.Tensor
    offsets: torch.Tensor
    labels: torch.Tensor
    paths: list[str]
    num_steps: int
    from_cache: bool
    frame_shape: tuple


class EventFrames(Dataset):
    """Binary frames of event recordings; rows of a shared FrameStore.

    Args:
        store: the frames of a source split.
        rows: int64 tensor [M]: which samples of the store this dataset holds, in order.

    Items: ``(frames, label)``: float32 0/1 ``[T, *frame_shape]`` and an int64 scalar tensor.
    """

    def __init__(self, store: FrameStore, rows: torch.Tensor):
        self.store = store
        self.rows = rows

    @property
    def labels(self) -> torch.Tensor:
        """int64 tensor [M]: the label of every item, in order."""
        return self.store.labels[self.rows]

    @property
    def from_cache(self) -> bool:
        """Whether the frames were read from the disk cache."""
        return self.store.from_cache

    def path(self, index: int) -> str:
        """The source of item ``index``."""
        return self.store.paths[int(self.rows[index])]

    def __len__(self) -> int:
        return int(self.rows.numel())

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self.rows[index])
        start, stop = int(self.store.offsets[row]), int(self.store.offsets[row + 1])
        frames = torch.zeros(self.store.num_steps * math.prod(self.store.frame_shape))
        frames[self.store.indices[start:stop].to(torch.int64)] = 1.0
        return frames.view(self.store.num_steps, *self.store.frame_shape), self.store.labels[row]
