"""``antlr-export RUN --nir out.nir``: a trained network as a NIR graph (Affine + CubaLIF nodes),
for the simulators and neuromorphic hardware that read NIR (:mod:`antlr_exp.export.nir_graph`).
Needs ``pip install 'antlr-exp[nir]'``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

DESCRIPTION = (
    "Write a trained network as a NIR graph (Affine + CubaLIF nodes) for the simulators and neuromorphic "
    "hardware that read NIR. Needs the nir extra: pip install 'antlr-exp[nir]'."
)


def _arguments(argv: Optional[list]):
    from ..export.nir_graph import DEFAULT_DT

    parser = argparse.ArgumentParser(prog="antlr-export", description=DESCRIPTION)
    parser.add_argument("run", help="a run folder, a seed_<s>/ folder of a stacked run, or a checkpoint .pt file")
    parser.add_argument("--nir", type=Path, required=True, metavar="OUT", help="write the network as NIR to this file")
    parser.add_argument("--trial", type=int, help="a stacked run's trial index (its job folder or last.pt)")
    parser.add_argument(
        "--dt",
        type=float,
        help=f"seconds per time step, for NIR's time constants (default: N-MNIST's bin, else {DEFAULT_DT:g})",
    )
    return parser, parser.parse_args(argv)


def _time_step(args, cfg) -> float:
    from ..export.nir_graph import DEFAULT_DT

    if args.dt is not None:
        return args.dt
    bin_us = cfg.task.options.get("bin_us") if "options" in cfg.task else None
    return DEFAULT_DT if bin_us is None else float(bin_us) * 1e-6


def main(argv: Optional[list] = None) -> int:
    parser, args = _arguments(argv)
    out = args.nir
    if out.is_dir() or not out.parent.is_dir():
        why = "is a folder" if out.is_dir() else f"cannot be written: {out.parent} is not a folder"
        parser.exit(2, f"antlr-export: error: --nir {out} {why}; accepted: a file in an existing folder\n")
    from ..errors import ConfigError
    from ..export.nir_graph import to_nir, warnings_for
    from ..training.load_run import load_run

    try:
        loaded = load_run(args.run, args.trial)
        cfg = loaded.config
        facts = {"task": str(cfg.task.name), "method": str(cfg.method.name), "seed": int(cfg.seed)}
        graph = to_nir(loaded.network, _time_step(args, cfg), metadata=facts)
    except ConfigError as error:
        parser.exit(2, f"antlr-export: error: {error}\n")
    import nir

    try:
        nir.write(str(out), graph)
    except OSError as error:
        parser.exit(2, f"antlr-export: error: --nir {out} cannot be written: {error.strerror or error}\n")
    for line in warnings_for(loaded.neuron):
        print(f"antlr-export: warning: {line}", file=sys.stderr)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
