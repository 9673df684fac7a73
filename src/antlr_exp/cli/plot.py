"""``antlr-plot``: the command line of :mod:`antlr_exp.results.plots`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..results.plots import __doc__ as _DOC
from ..results.plots import accuracy_vs_spikes, accuracy_vs_synops, groups, has_synops, loss_curves

DESCRIPTION = _DOC.split("\n\n")[0]


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="antlr-plot", description=DESCRIPTION)
    parser.add_argument("paths", nargs="+", help="sweep folders (or any folders holding job folders)")
    parser.add_argument("--out", type=Path, help="where the PNGs go (default: the first folder)")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        parser.exit(2, "antlr-plot: error: matplotlib is not installed; pip install 'antlr-exp[figures]'\n")
    for path in args.paths:
        if not Path(path).is_dir():
            parser.exit(2, f"antlr-plot: error: {path} is not a folder\n")
    grouped = groups(args.paths)
    if not grouped:
        parser.exit(
            2,
            f"antlr-plot: error: no finished jobs (summary.json with .hydra/config.yaml) below "
            f"{', '.join(args.paths)}\n",
        )
    out = args.out or Path(args.paths[0])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.exit(2, f"antlr-plot: error: --out {out} cannot be made a folder: {error.strerror or error}\n")
    import matplotlib.pyplot as plt

    drawings = [("accuracy_vs_spikes.png", accuracy_vs_spikes), ("loss_curves.png", loss_curves)]
    if has_synops(grouped):
        drawings.insert(1, ("accuracy_vs_synops.png", accuracy_vs_synops))
    for name, draw in drawings:
        figure = draw(grouped)
        try:
            figure.savefig(out / name, dpi=120)
        except OSError as error:
            parser.exit(2, f"antlr-plot: error: {out / name} cannot be written: {error.strerror or error}\n")
        finally:
            plt.close(figure)
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
