"""Fig. 5: the gradient recorder of the runner, the least-squares integrator, and the driver at tiny scale."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.runs import compose_config, tiny_overrides

from antlr_exp.engine.losses import spike_train_loss
from antlr_exp.training.build import build_network, load_data
from antlr_exp.training.run import run
from antlr_exp.training.state import GRADIENTS_FILE

pytest.importorskip("scipy")
from antlr_exp.figures import fig5_landscape as fig5  # noqa: E402

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)


def surface(x, y):
    return x**2 - 2 * x * y + np.sin(y)


def integrate_known_surface(n: int) -> float:
    """Max error of the integrator on z = x^2 - 2xy + sin(y) over [-1.5, 1.5] x [-1, 2]."""
    xs, ys = np.linspace(-1.5, 1.5, n), np.linspace(-1.0, 2.0, n)
    x, y = np.meshgrid(xs, ys)  # [len(ys), len(xs)], x varies along columns
    gx, gy = 2 * x - 2 * y, -2 * x + np.cos(y)  # closed-form gradient
    anchor = (n // 2, n // 2)
    z = fig5.integrate_gradient(gx, gy, xs, ys, anchor, surface(xs[anchor[1]], ys[anchor[0]]))
    assert z.shape == (n, n)
    assert z[anchor] == pytest.approx(surface(xs[anchor[1]], ys[anchor[0]]))
    return float(np.abs(z - surface(x, y)).max())


def test_integrator_recovers_a_known_surface_to_second_order():
    coarse, fine = integrate_known_surface(21), integrate_known_surface(41)
    # the field of the quadratic part is linear, which the trapezoid rule integrates exactly; the
    # sin(y) part's error is at most h^2 / 12 * max|d^2 cos / dy^2| * (path length 3) with h = 0.15
    assert coarse < 0.15**2 / 12 * 3  # ~0.0056, while the surface spans about 8
    assert fine < coarse / 3  # O(h^2): halving h divides the error by about 4


def test_integrator_of_a_gradient_free_field_is_flat():
    xs = ys = np.linspace(0.0, 1.0, 7)
    zero = np.zeros((7, 7))
    assert np.allclose(fig5.integrate_gradient(zero, zero, xs, ys, (0, 0), 3.5), 3.5)


def test_recorded_gradients_are_the_unclipped_gradients(tmp_path):
    overrides = [
        *tiny_overrides("matching", {}, steps=3),
        "trainer.record_gradients=true",
        "optimizer.grad_clip_value=1e-6",
    ]
    cfg = compose_config(*overrides)
    run(cfg, tmp_path)
    recorded = torch.load(tmp_path / GRADIENTS_FILE, weights_only=True)
    torch.manual_seed(int(cfg.seed))  # as the runner: the seed, then the data, then the network
    data = load_data(cfg)
    net = build_network(cfg, data)
    assert recorded.dtype == torch.float32
    assert recorded.shape == (3, sum(p.numel() for p in net.parameters()))
    inputs, target = data.train[0]
    out = net(inputs[None])
    spike_train_loss(out.output_spikes, out.output_times, target[None], decay=cfg.loss.decay).backward()
    first = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in net.parameters()])
    assert torch.allclose(recorded[0], first, rtol=1e-5, atol=1e-7)
    assert first.abs().max() > 1e-6  # so the row above was recorded before clipping


def test_gradients_are_not_recorded_by_default(tmp_path):
    run(compose_config(*tiny_overrides("matching", {}, steps=2)), tmp_path)
    assert not (tmp_path / GRADIENTS_FILE).exists()


def test_driver_writes_figure_and_table_at_tiny_scale(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "antlr_exp.cli.figure", "fig5", "--scale", "tiny", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    png = tmp_path / "fig5_landscape.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    table = (tmp_path / "fig5_landscape.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["true", "activation", "timing", "antlr"]
    assert (tmp_path / "run" / GRADIENTS_FILE).is_file()
