"""Fig. 5 (paper 3.4): the true loss landscape around a zero-loss optimum, and the landscape that
each rule's gradient field implies.

1. ``antlr-train experiment=fig5_landscape`` (a subprocess, so the same command runs on a cluster
   launcher): 10-50-50-1, one matching problem with 1 target spike, ANTLR, trained to zero loss
   with ``trainer.record_gradients=true`` (``gradients.pt``: every step's gradient).
2. PCA of the gradients met on the way to the best checkpoint (the rows up to its step, centred,
   ``torch.linalg.svd``): two unit directions d0, d1 in parameter space.
3. On an n x n grid of (a, b) in [-r, r]^2: parameters theta* + a d0 + b d1; the true loss (forward)
   and, for each rule (activation, timing, antlr with 1, 1), its gradient projected on d0 and d1,
   i.e. the rule's estimate of (dL/da, dL/db).
4. Each rule's field is integrated by least squares (Harker & O'Leary 2008): Z minimising
   ||Dx Z - Ga||^2 + ||Dy Z - Gb||^2, with D forward differences between neighbours and the field
   averaged onto the same edges (trapezoid rule), as scipy sparse matrices solved through the
   normal equations, with Z fixed to the true loss at the centre (the integration constant).

The radius r: the grid must show the flat region around the optimum where only the output spike
*time* moves and a change of the output spike *count* (the cliff). The script walks outwards from
the optimum along +-d0 and +-d1 and finds, on each half-axis, the first |a| at which the output
spike count changes; r = ``--radius-factor`` (default 2) x the median of those distances, so the
same-count basin fills roughly the middle half of the grid and count changes surround it.
``--radius`` fixes r instead.

Outputs in ``--out``: ``fig5_landscape.png`` (row 1: the four surfaces on the true loss's colour
scale, the count-change boundary dashed; row 2: each surface on its own colour scale, as the
rules' gradients are not scaled like the true loss's; row 3: each surface inside the same-count
region only, minus its value at the optimum, on its own scale: the timing-shift relief), ``fig5_landscape.md`` (per
rule: correlation with the true loss and RMSE over the grid, the correlation inside the same-count
region and over the count-changed region, and the cliff contrast and sign agreement across
the edges of the grid where an output spike is added or removed), ``fig5_landscape.json`` and
the training run in ``run/``.

    antlr-figure fig5 --scale quick --out outputs/fig5_landscape/quick   # ~40 s
    # (docs/figures/fig5_landscape.{png,md} are copies of that run's figure and table)
    antlr-figure fig5 --scale full --out outputs/fig5_landscape/full     # ~2-3 min

The scales (grid and training overrides): ``scales/fig5.yaml``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from ..results import plots as plot
from . import common

RULES = ("activation", "timing", "antlr")
TITLES = {
    "true": "(a) true loss",
    "activation": "(b) activation-based",
    "timing": "(c) timing-based",
    "antlr": "(d) ANTLR (λ_act, λ_tim = 1, 1)",
}


# ---------------------------------------------------------------------------------------------
# Least-squares integration of a gradient field


def difference_matrix(n: int, h: float) -> sp.csr_matrix:
    """Forward differences on n equally spaced points, [n-1, n]: (z[k+1] - z[k]) / h."""
    if n < 2:
        raise ValueError("need at least 2 points per axis")
    return (sp.diags([-np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n)) / h).tocsr()


def midpoint_matrix(n: int) -> sp.csr_matrix:
    """Averages of neighbouring points, [n-1, n]: (g[k] + g[k+1]) / 2."""
    return sp.diags([np.full(n - 1, 0.5), np.full(n - 1, 0.5)], [0, 1], shape=(n - 1, n)).tocsr()


def integrate_gradient(
    gx: np.ndarray, gy: np.ndarray, xs: np.ndarray, ys: np.ndarray, anchor: tuple, value: float
) -> np.ndarray:
    """The surface Z [len(ys), len(xs)] (Z[i, j] at (xs[j], ys[i])) whose finite differences best
    match the gradient field in least squares, with Z[anchor] = value.

    gx[i, j] ~ dZ/dx, gy[i, j] ~ dZ/dy at the grid points, ``xs`` and ``ys`` equally spaced.
    Every difference between neighbours is matched to the trapezoid rule's integral of the field
    between them: minimise ||Dx Z - Mx Gx||^2 + ||Dy Z - My Gy||^2 (D forward differences, M
    neighbour averages, on the staggered edges of the grid). Unlike central differences this has
    no checkerboard mode that a rough field can excite; the error is O(h^2) for smooth fields.
    The normal equations (a graph Laplacian with the anchor removed) are solved by spsolve."""
    ny, nx = gx.shape
    eye_x, eye_y = sp.identity(nx), sp.identity(ny)
    # Z flattened row-major: index i * nx + j
    dx = sp.kron(eye_y, difference_matrix(nx, float(xs[1] - xs[0])))
    dy = sp.kron(difference_matrix(ny, float(ys[1] - ys[0])), eye_x)
    operator = sp.vstack([dx, dy]).tocsc()
    rhs = np.concatenate(
        [sp.kron(eye_y, midpoint_matrix(nx)) @ np.ravel(gx), sp.kron(midpoint_matrix(ny), eye_x) @ np.ravel(gy)]
    ).astype(np.float64)
    fixed = anchor[0] * nx + anchor[1]
    free = np.setdiff1d(np.arange(nx * ny), [fixed])
    rhs = rhs - operator[:, fixed].toarray().ravel() * value
    reduced = operator[:, free]
    solution = spla.spsolve((reduced.T @ reduced).tocsc(), reduced.T @ rhs)
    z = np.empty(nx * ny)
    z[free], z[fixed] = solution, value
    return z.reshape(ny, nx)


# ---------------------------------------------------------------------------------------------
# Training through antlr-train


def train(run_dir: Path, scale_overrides: list, extra: list) -> float:
    command = [
        *common.antlr_train_command(),
        "experiment=fig5_landscape",
        *scale_overrides,
        "trainer.progress_bar=false",
        "device=cpu",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    print("+", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# The landscape


class Landscape:
    """The trained network, its one sample, and loss / rule gradients at perturbed parameters."""

    def __init__(self, run_dir: Path):
        from omegaconf import OmegaConf

        from antlr_exp import checkpoint as ckpt
        from antlr_exp.training.build import build_network, load_data
        from antlr_exp.training.state import GRADIENTS_FILE

        best = ckpt.load(ckpt.checkpoint_dir(run_dir) / ckpt.BEST)
        self.cfg = OmegaConf.create(best["config"])
        self.best_step = int(best["step"])
        data = load_data(self.cfg)
        self.net = build_network(self.cfg, data)
        self.net.load_state_dict(best["model"])
        self.params = list(self.net.parameters())
        self.theta = torch.nn.utils.parameters_to_vector(self.params).detach().clone()
        inputs, target = data.train[0]
        self.inputs, self.target = inputs[None], target[None]
        self.decay = float(self.cfg.loss.decay)
        self.gradients = ckpt.load(run_dir / GRADIENTS_FILE)

    def directions(self) -> tuple:
        """First two principal components of the gradients recorded up to the best checkpoint."""
        rows = self.gradients[: max(self.best_step, 2)].double()
        centred = rows - rows.mean(dim=0)
        _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
        explained = (singular**2 / (singular**2).sum())[:2]
        return vh[0], vh[1], explained.tolist(), rows.shape[0]

    def evaluate(self, point: torch.Tensor, rules=RULES) -> dict:
        """Loss, output spike count and each rule's full gradient at parameters ``point``."""
        from antlr_exp.losses import spike_train_loss

        torch.nn.utils.vector_to_parameters(point.to(self.theta.dtype), self.params)
        result = {"gradients": {}}
        for rule in rules:
            self.net.set_rule(rule, 1.0, 1.0)
            self.net.zero_grad(set_to_none=True)
            out = self.net(self.inputs)
            loss = spike_train_loss(out.output_spikes, out.output_times, self.target, decay=self.decay)
            loss.backward()
            result["loss"] = float(loss.detach())
            result["count"] = int(out.output_spikes.sum())
            result["gradients"][rule] = torch.cat(
                [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in self.params]
            ).double()
        return result

    def count_at(self, point: torch.Tensor) -> int:
        torch.nn.utils.vector_to_parameters(point.to(self.theta.dtype), self.params)
        with torch.no_grad():
            return int(self.net(self.inputs).output_spikes.sum())


def count_change_distance(land: Landscape, direction: torch.Tensor, limit: float, steps: int = 200) -> float:
    """First distance along ``direction`` (<= limit) at which the output spike count changes."""
    base = land.count_at(land.theta)
    for k in range(1, steps + 1):
        distance = limit * k / steps
        if land.count_at(land.theta.double() + distance * direction) != base:
            return distance
    return float("nan")


def choose_radius(land: Landscape, d0, d1, factor: float, limit: float = 20.0) -> tuple:
    distances = [count_change_distance(land, sign * d, limit) for d in (d0, d1) for sign in (1.0, -1.0)]
    finite = [x for x in distances if np.isfinite(x)]
    radius = factor * float(np.median(finite)) if finite else limit
    return radius, distances


def compute(land: Landscape, d0, d1, radius: float, n: int) -> dict:
    axis = np.linspace(-radius, radius, n)
    loss = np.zeros((n, n))
    count = np.zeros((n, n), dtype=int)
    fields = {rule: (np.zeros((n, n)), np.zeros((n, n))) for rule in RULES}
    theta = land.theta.double()
    for i, b in enumerate(axis):  # rows: Dim_1
        for j, a in enumerate(axis):  # columns: Dim_0
            result = land.evaluate(theta + a * d0 + b * d1)
            loss[i, j], count[i, j] = result["loss"], result["count"]
            for rule, g in result["gradients"].items():
                fields[rule][0][i, j] = float(g @ d0)
                fields[rule][1][i, j] = float(g @ d1)
    torch.nn.utils.vector_to_parameters(land.theta, land.params)
    centre = (n // 2, n // 2)
    surfaces = {"true": loss}
    for rule, (ga, gb) in fields.items():
        surfaces[rule] = integrate_gradient(ga, gb, axis, axis, centre, loss[centre])
    return {"axis": axis, "loss": loss, "count": count, "surfaces": surfaces, "centre": centre}


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def neighbour_steps(z: np.ndarray) -> np.ndarray:
    """Differences between horizontal and vertical grid neighbours (second minus first)."""
    return np.concatenate([np.diff(z, axis=1).ravel(), np.diff(z, axis=0).ravel()])


def edge_counts(count: np.ndarray) -> tuple:
    """Output spike counts at both ends of every edge of neighbour_steps, first and second."""
    first = np.concatenate([count[:, :-1].ravel(), count[:-1, :].ravel()])
    second = np.concatenate([count[:, 1:].ravel(), count[1:, :].ravel()])
    return first, second


def scores(result: dict) -> dict:
    """Per surface: how it matches the true loss, overall and split by output spike count, and
    whether it has a cliff where an output spike is added or removed (scale-free)."""
    loss, count, centre = result["loss"], result["count"], result["centre"]
    same = count == count[centre]
    true_steps = neighbour_steps(loss)
    first, second = edge_counts(count)
    low, high, base = np.minimum(first, second), np.maximum(first, second), count[centre]
    edges = {"added": (low == base) & (high > base), "removed": (high == base) & (low < base)}
    smooth = first == second
    rows = {}
    for key in ("true", *RULES):
        z = result["surfaces"][key]
        steps = neighbour_steps(z)
        row = {
            "corr_all": _corr(z.ravel(), loss.ravel()),
            "rmse": float(np.sqrt(np.mean((z - loss) ** 2))),
            "corr_same_count": _corr(z[same], loss[same]),
            "corr_count_changed": _corr(z[~same], loss[~same]),
        }
        for kind, crossing in edges.items():
            ok = crossing.any() and smooth.any()
            # mean |step| across edges where the count changes / mean |step| across edges where it does not
            row[f"contrast_{kind}"] = (
                float(np.abs(steps[crossing]).mean() / np.abs(steps[smooth]).mean()) if ok else float("nan")
            )
            # share of those edges where the surface steps the same way as the true loss
            row[f"sign_{kind}"] = (
                float(np.mean(np.sign(steps[crossing]) == np.sign(true_steps[crossing]))) if ok else float("nan")
            )
        rows[key] = row
    return rows


# ---------------------------------------------------------------------------------------------
# Outputs


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def write_table(rows: dict, facts: dict, path: Path) -> None:
    lines = [
        "| surface | corr (all grid) | RMSE | corr (same output count) | corr (count changed) | "
        "cliff contrast, spike added | sign agreement, added | cliff contrast, spike removed | "
        "sign agreement, removed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rule in ("true", *RULES):
        r = rows[rule]
        lines.append(
            f"| {rule} | {_fmt(r['corr_all'])} | {_fmt(r['rmse'])} | {_fmt(r['corr_same_count'])} | "
            f"{_fmt(r['corr_count_changed'])} | {_fmt(r['contrast_added'])} | {_fmt(r['sign_added'])} | "
            f"{_fmt(r['contrast_removed'])} | {_fmt(r['sign_removed'])} |"
        )
    notes = [
        "",
        f"Scale `{facts['scale']}`: {facts['grid']}x{facts['grid']} grid, r = {facts['radius']:.4g} "
        f"(parameter-space units along unit PCs); loss at the optimum {facts['centre_loss']:.4g} "
        f"(best checkpoint, step {facts['best_step']}); PCs from {facts['pca_rows']} gradients, "
        f"explaining {facts['explained'][0]:.1%} and {facts['explained'][1]:.1%} of their variance; "
        f"{facts['same_fraction']:.0%} of the grid keeps the optimum's output spike count "
        f"({facts['centre_count']}).",
        "",
        "Columns: Pearson correlation of the rule's least-squares surface with the true loss over the "
        "grid, its RMSE; the correlation inside the region where the output spike count equals the "
        "optimum's (spike-timing shifts only) and over the rest (count changed); cliff contrast = "
        "mean |difference between grid neighbours| across the edges where an output spike is added "
        "(removed) relative to the optimum's count, divided by the same over the edges where the count "
        "does not change (scale-free; about 1: no cliff; the true loss's value in the first row is the "
        "reference); sign agreement = share of those edges where the surface steps up or down as the "
        "true loss does. The rules' "
        "gradients are not scaled like the true loss's derivatives, so correlations and contrasts, not "
        "RMSE, compare shapes.",
    ]
    path.write_text("\n".join(lines + notes) + "\n")


def parse_args(argv=None, prog=None, scales=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=tuple(scales or common.load_scales("fig5")["scales"]), default="quick")
    parser.add_argument("--out", type=Path, required=True, help="folder for the figure, table and run/")
    parser.add_argument("--radius", type=float, default=None, help="r; default: chosen from the count changes")
    parser.add_argument("--radius-factor", type=float, default=2.0)
    parser.add_argument("--grid", type=int, default=None, help="points per axis (default: the scale's)")
    parser.add_argument("--skip-train", action="store_true", help="reuse the run already in OUT/run")
    parser.add_argument("overrides", nargs="*", help="extra antlr-train overrides, e.g. seed=2")
    return parser.parse_args(argv)


def main(argv=None, prog=None, root=None) -> int:
    """``root`` is unused: ``--out`` (required) is the one place this driver writes to."""
    scales = common.load_scales("fig5")["scales"]
    args = parse_args(argv, prog, scales)
    scale = scales[args.scale]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    train_s = 0.0 if args.skip_train else train(run_dir, scale["overrides"], args.overrides)

    started = time.perf_counter()
    land = Landscape(run_dir)
    d0, d1, explained, pca_rows = land.directions()
    if args.radius is not None:
        radius, distances = args.radius, []
    else:
        radius, distances = choose_radius(land, d0, d1, args.radius_factor)
    n = args.grid or scale["grid"]
    n += 1 - n % 2  # odd: the optimum is a grid point
    result = compute(land, d0, d1, radius, n)
    rows = scores(result)
    centre = result["centre"]
    same = result["count"] == result["count"][centre]
    facts = {
        "scale": args.scale,
        "grid": n,
        "radius": radius,
        "count_change_distances": distances,
        "centre_loss": float(result["loss"][centre]),
        "centre_count": int(result["count"][centre]),
        "best_step": land.best_step,
        "pca_rows": pca_rows,
        "explained": explained,
        "same_fraction": float(same.mean()),
        "train_s": round(train_s, 1),
        "landscape_s": round(time.perf_counter() - started, 1),
    }
    title = (
        f"Fig. 5: loss landscape of 10-50-50-1 around a zero-loss optimum ({n}x{n} grid, r={radius:.3g}); "
        "dashed: where the output spike count changes"
    )
    plot.save(
        plot.landscape(result, {key: TITLES[key] for key in ("true", *RULES)}, title),
        out / "fig5_landscape.png",
        dpi=100,
    )
    write_table(rows, facts, out / "fig5_landscape.md")
    (out / "fig5_landscape.json").write_text(json.dumps({"facts": facts, "scores": rows}, indent=2) + "\n")
    print((out / "fig5_landscape.md").read_text())
    print(f"training {facts['train_s']} s, landscape {facts['landscape_s']} s; wrote {out}/fig5_landscape.png")
    return 0
