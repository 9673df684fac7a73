"""Tiny SHD/SSC files in tonic's HDF5 layout, written with h5py for the tests."""

from __future__ import annotations

import h5py
import numpy as np

CHANNELS = 700


def write_file(path, samples, num_classes: int = 20) -> None:
    """One file in the layout tonic reads: ``spikes/times`` (seconds, float16, as SHD stores
    them), ``spikes/units``, ``labels``, and the ``extra/keys`` and ``extra/speaker`` tonic opens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        times = file.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float16))
        units = file.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for index, (t, u, _) in enumerate(samples):
            times[index] = np.asarray(t, dtype=np.float16)
            units[index] = np.asarray(u, dtype=np.uint16)
        file["labels"] = np.array([label for *_, label in samples], dtype=np.uint16)
        file["extra/keys"] = np.array([f"word-{c}".encode() for c in range(num_classes)])
        file["extra/speaker"] = np.zeros(len(samples), dtype=np.uint16)


def random_samples(count: int, rng: np.random.Generator, num_classes: int = 20) -> list:
    """Spikes in a band of channels set by the label (learnable), at times up to 1.3 s."""
    samples = []
    for index in range(count):
        label = index % num_classes
        n = int(rng.integers(20, 60))
        times = np.sort(rng.random(n) * 1.3)
        units = np.where(rng.random(n) < 0.7, 30 * label + rng.integers(0, 30, n), rng.integers(0, CHANNELS, n))
        samples.append((times, units, label))
    return samples


def write_fake_shd(root, train: int = 30, test: int = 10, seed: int = 0) -> dict:
    """``root/SHD/shd_train.h5`` and ``shd_test.h5``; returns the samples written, by split."""
    rng = np.random.default_rng(seed)
    written = {"train": random_samples(train, rng), "test": random_samples(test, rng)}
    for split, samples in written.items():
        write_file(root / "SHD" / f"shd_{split}.h5", samples)
    return written
