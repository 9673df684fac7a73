"""The paper's figures and the studies beyond it, installed: ``antlr-figure NAME --scale S``.

Each driver runs its sweeps through ``antlr-train -m`` (so any Hydra launcher scales it out),
reads the job folders back, and writes a PNG (drawn by :mod:`antlr_exp.results.plots`) and a markdown
table. Its scales (tiny: a smoke test; quick: minutes on 2 CPU cores; full: the paper's trials
and epochs) are config, one file per figure in ``scales/``: the antlr-train overrides of each
scale and the driver's own settings (fig5's grid, the swept weights of lambda_sweep).

Two tools of the output-collapse study (Fig. 8) sit beside them and run as modules:
``python -m antlr_exp.figures.collapse_trace`` (one row per optimizer step of a run) and
``python -m antlr_exp.figures.collapse_rate`` (which trials of a run collapsed).

To add a figure: a module here with ``main(argv, prog, root) -> int``, its ``scales/<name>.yaml``,
and a line in :data:`FIGURES`.
"""

from __future__ import annotations

import importlib

#: name -> (module, one line on what it draws); the module's name is the figure's long name
FIGURES = {
    "fig5": ("fig5_landscape", "Fig. 5: the loss landscape around a zero-loss optimum, and each rule's estimate"),
    "fig6": ("fig6_matching", "Fig. 6: random spike-train matching, training loss against iteration"),
    "fig7": ("fig7_mnist", "Fig. 7: latency-coded MNIST, test accuracy against spikes per sample"),
    "fig8": ("fig8_nmnist", "Fig. 8: N-MNIST, test accuracy against spikes per sample"),
    "same_loss": ("same_loss", "the rules under one loss and one decision, latency MNIST"),
    "lambda_sweep": ("lambda_sweep", "ANTLR's sensitivity to lambda_act and lambda_tim, latency MNIST"),
}


def resolve(name: str) -> str:
    """The figure's short name for a short or long name (``fig7`` or ``fig7_mnist``); KeyError else."""
    if name in FIGURES:
        return name
    for short, (module, _) in FIGURES.items():
        if name == module:
            return short
    raise KeyError(name)


def driver(name: str):
    """The driver module of figure ``name`` (short or long)."""
    return importlib.import_module(f"{__name__}.{FIGURES[resolve(name)][0]}")
