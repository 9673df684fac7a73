"""What the end-to-end tests share: the composed config, tiny fake datasets, tiny runs and the
installed command.

End-to-end tests run on tiny fake datasets written here (a few MNIST images in IDX files, a few
N-MNIST recordings in the original .bin format), so they take seconds and need no download.
``tiny_overrides`` shrinks a run to a couple of optimizer steps on a small network.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from antlr_exp.config import CONF_DIR

REPO = Path(__file__).resolve().parents[2]
#: Where the tests that use real data find it: the same place antlr-train looks ($ANTLR_EXP_DATA,
#: else data/ in the repository); those tests are skipped where it is absent.
DATA_ROOT = Path(os.environ.get("ANTLR_EXP_DATA") or REPO / "data")
ANTLR_TRAIN = Path(sys.executable).parent / "antlr-train"


def compose_config(*overrides: str):
    """The config ``antlr-train`` would run with these overrides (no Hydra run folder)."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=list(overrides))


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (the MNIST format): magic, dimensions, data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_digits(count: int, rng: np.random.Generator) -> tuple:
    """Images whose label is written in them (a bright bar at a label-dependent row), so a
    network can learn them; labels cycle through 0..9."""
    labels = np.arange(count) % 10
    images = rng.integers(0, 60, size=(count, 28, 28))
    for image, label in zip(images, labels):
        image[2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images, labels


def _write_recording(path: Path, label: int, rng: np.random.Generator) -> None:
    """An N-MNIST .bin recording: 5 bytes per event (x, y, polarity bit + 23-bit time in us)."""
    count = 200
    x = rng.integers(0, 34, count)
    y = np.where(rng.random(count) < 0.5, 3 * label, rng.integers(0, 34, count))
    polarity = rng.integers(0, 2, count)
    times = np.sort(rng.integers(0, 60_000, count))
    raw = np.zeros((count, 5), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (polarity << 7) | ((times >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (times >> 8) & 0xFF, times & 0xFF
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


def write_fake_data(base: Path) -> dict:
    """Fake MNIST (60 training, 30 test images), N-MNIST (60/20 recordings) and SHD (30/10) folders in ``base``."""
    rng = np.random.default_rng(0)
    raw = base / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, count in (("train", 60), ("t10k", 30)):
        images, labels = _fake_digits(count, rng)
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    for split, count in (("Train", 60), ("Test", 20)):
        for index in range(count):
            _write_recording(base / "nmnist" / split / str(index % 10) / f"{index:05d}.bin", index % 10, rng)
    from helpers.shd_files import write_fake_shd

    write_fake_shd(base / "shd")
    return {"mnist": base / "mnist", "nmnist": base / "nmnist", "shd": base / "shd", "cache": base / "cache"}


def tiny_overrides(task: str, data_roots: dict, steps: int = 2) -> list:
    """Overrides that make a run of ``task`` take about a second."""
    common = ["trainer.progress_bar=false", f"trainer.max_steps={steps}"]
    if task == "matching":
        return ["task=matching", "task.num_steps=30", "trainer.val_every_n_steps=2", *common]
    overrides = [
        f"task={task}",
        f"data.root={data_roots[task]}",
        "data.limit_train=16",
        "data.limit_test=8",
        "task.num_steps=30",
        "task.hidden_sizes=[32]",
        "trainer.batch_size=8",
        "trainer.test_batch_size=8",
        *common,
    ]
    if task in ("nmnist", "shd"):
        overrides.append(f"task.options.cache_dir={data_roots['cache']}")
    return overrides


def cli_env() -> dict:
    """Environment of the CLI subprocesses: one thread (the tests' runs are tiny), quiet wandb."""
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_SILENT="true")
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_cli(args: list, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """``antlr-train ARGS`` in a subprocess."""
    return subprocess.run(
        [str(ANTLR_TRAIN), *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )
