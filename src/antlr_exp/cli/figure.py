"""``antlr-figure``: run one of the paper's figures or studies (``antlr-figure --list``).

    antlr-figure fig7 --scale quick              # docs/figures/fig7_mnist.{png,md}
    antlr-figure fig6 --scale tiny --out /tmp/f  # seconds
    antlr-figure fig7 --help                     # the figure's own options

Everything after NAME goes to the figure's driver: ``--scale tiny|quick|full``, ``--no-run`` (redraw
from the sweep folders), ``--jobs N``, ``--out DIR`` and extra antlr-train overrides.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..figures import FIGURES, driver, resolve


def listing() -> str:
    width = max(len(name) for name in FIGURES)
    return "\n".join(
        f"{name:<{width}}  {what} (also: {module})" if module != name else f"{name:<{width}}  {what}"
        for name, (module, what) in FIGURES.items()
    )


def run(name: str, argv: list, prog: Optional[str] = None, root: Optional[Path] = None) -> int:
    """Run figure ``name`` (short or long) with the driver's arguments ``argv``; ``root``: where
    ``docs/figures`` and ``multirun`` go by default (the current folder where None)."""
    try:
        import matplotlib
    except ImportError:
        print("antlr-figure: error: matplotlib is not installed; pip install 'antlr-exp[figures]'", file=sys.stderr)
        return 2
    matplotlib.use("Agg")
    short = resolve(name)
    return driver(short).main(argv, prog=prog or f"antlr-figure {short}", root=root) or 0


def main(argv: Optional[list] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="antlr-figure",
        usage="antlr-figure NAME [--scale S] [options] [overrides]",
        description=__doc__.split("\n\n")[0],
        epilog="figures:\n" + listing() + "\n\n" + __doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--list", action="store_true", help="name every figure and what it draws")
    if argv and not argv[0].startswith("-"):
        try:
            resolve(argv[0])
        except KeyError:
            names = ", ".join(FIGURES) + " (or " + ", ".join(m for m, _ in FIGURES.values() if m not in FIGURES) + ")"
            parser.exit(2, f"antlr-figure: error: figure {argv[0]!r} is not one of {names}\n")
        return run(argv[0], argv[1:])
    args = parser.parse_args(argv)
    if args.list:
        print(listing())
        return 0
    parser.error("name a figure (antlr-figure --list names them)")


def shim(script: str) -> None:
    """The old ``scripts/<figure>.py``: run the figure its file is named after, with the
    repository it sits in as the default place of ``docs/figures`` and ``multirun``."""
    path = Path(script).resolve()
    sys.exit(run(path.stem, sys.argv[1:], prog=path.name, root=path.parents[1]))


if __name__ == "__main__":
    sys.exit(main())
