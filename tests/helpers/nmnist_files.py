"""N-MNIST recordings for the tests: the .bin format decoded and written by hand, and the frames
a recording should give, computed from its bytes independently of the package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def decode_bin(path: Path) -> dict[str, np.ndarray]:
    """Decode an N-MNIST .bin with numpy alone: 5 bytes per event, x, y, polarity bit, 23-bit
    timestamp (microseconds), big-endian."""
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    return {
        "x": raw[:, 0],
        "y": raw[:, 1],
        "p": raw[:, 2] >> 7,
        "t": ((raw[:, 2] & 127) << 16) | (raw[:, 3] << 8) | raw[:, 4],
    }


def expected_frames(path: Path, num_steps: int, bin_us: int = 1000, before_us: int | None = None) -> torch.Tensor:
    events = decode_bin(path)
    assert (events["y"] != 240).all()  # no timestamp-overflow markers in these recordings
    keep = events["t"] < num_steps * bin_us
    if before_us is not None:
        keep &= events["t"] < before_us
    frames = np.zeros((num_steps, 2, 34, 34), dtype=np.float32)
    frames[events["t"][keep] // bin_us, events["p"][keep], events["y"][keep], events["x"][keep]] = 1
    return torch.from_numpy(frames)


def encode_events(events: list[tuple[int, int, int, int]]) -> bytes:
    """(x, y, p, t_us) events as N-MNIST .bin bytes."""
    data = bytearray()
    for x, y, p, t in events:
        data += bytes([x, y, (p << 7) | ((t >> 16) & 127), (t >> 8) & 255, t & 255])
    return bytes(data)


def write_recording(path: Path, events: list[tuple[int, int, int, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_events(events))
    return path
