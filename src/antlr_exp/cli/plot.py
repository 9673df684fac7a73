"""``antlr-plot``: the command line of :mod:`antlr_exp.results.plots`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..results.plots import __doc__ as _DOC
from ..results.plots import accuracy_vs_spikes, accuracy_vs_synops, groups, has_synops, loss_curves

DESCRIPTION = _DOC.split("\n\n")[0]


SPLITS = ("train", "val", "test")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: accepted: a whole number >= 1")
    return value


def _arguments(argv: Optional[list]) -> tuple:
    parser = argparse.ArgumentParser(prog="antlr-plot", description=DESCRIPTION)
    parser.add_argument("paths", nargs="*", help="sweep folders (or any folders holding job folders)")
    parser.add_argument("--out", type=Path, help="where the PNGs go (default: the first folder, or RUN)")
    raster = parser.add_argument_group("a run's spikes (--raster RUN draws raster_<split>.png)")
    raster.add_argument(
        "--raster",
        metavar="RUN",
        help="a run folder, a seed_<s>/ folder or a checkpoint .pt: spike rasters of its input, hidden "
        "layers and output on a few samples, the label and the decision marked",
    )
    raster.add_argument("--samples", type=_positive, default=3, help="how many samples (default: 3)")
    raster.add_argument("--split", choices=SPLITS, default="test", help="which samples (default: test)")
    raster.add_argument("--traces", action="store_true", help="add the membrane potentials of a few neurons")
    raster.add_argument("--trial", type=int, help="a stacked run's trial index (its folder or last.pt)")
    raster.add_argument("--data-root", type=Path, help="where the run's data is (default: where it was)")
    args = parser.parse_args(argv)
    if args.raster is None and not args.paths:
        parser.error("give sweep folders, or --raster RUN")
    if args.raster is not None and args.paths:
        parser.error("--raster RUN draws one run; give it without sweep folders")
    return parser, args


def draw_raster(parser, args) -> None:
    """``--raster RUN``: the run's network on the first ``--samples`` samples of ``--split``."""
    import matplotlib.pyplot as plt
    from torch.utils.data.dataloader import default_collate

    from ..errors import ConfigError, DatasetNotFoundError
    from ..results.rasters import raster_figure, record
    from ..training.load_run import load_run

    try:
        loaded = load_run(args.raster, args.trial)
        dataset = getattr(loaded.data.load(root=args.data_root), args.split)
    except (ConfigError, DatasetNotFoundError) as error:
        parser.exit(2, f"antlr-plot: error: {error}\n")
    inputs, targets = default_collate([dataset[i] for i in range(min(args.samples, len(dataset)))])
    samples = record(loaded.network, inputs, targets, loaded.config.loss.decision, args.traces)
    cfg = loaded.config
    title = f"{cfg.task.name} / {cfg.method.name}, seed {cfg.seed}: {args.split} samples"
    figure = raster_figure(samples, loaded.neuron.theta, args.traces, title)
    run_folder = Path(args.raster) if Path(args.raster).is_dir() else Path(args.raster).parent
    run_folder = run_folder.parent if run_folder.name == "checkpoints" else run_folder
    out = args.out or run_folder
    name = f"raster_{args.split}{'' if args.trial is None else f'_trial{args.trial}'}.png"
    try:
        out.mkdir(parents=True, exist_ok=True)
        figure.savefig(out / name, dpi=120)
    except OSError as error:
        parser.exit(2, f"antlr-plot: error: {out / name} cannot be written: {error.strerror or error}\n")
    finally:
        plt.close(figure)
    print(out / name)


def main(argv: Optional[list] = None) -> int:
    parser, args = _arguments(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        parser.exit(2, "antlr-plot: error: matplotlib is not installed; pip install 'antlr-exp[figures]'\n")
    if args.raster is not None:
        draw_raster(parser, args)
        return 0
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
