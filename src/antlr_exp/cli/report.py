"""``antlr-report``: the command line of :mod:`antlr_exp.results.report` (imports no torch)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..results.report import (
    DEFAULT_METRICS,
    FORMATS,
    ReportError,
    aggregate,
    check_keys,
    problems,
    render,
    scan,
)
from ..results.report import __doc__ as _DOC

DESCRIPTION = _DOC.split("\n\n")[0]


def _unwritable(path: Path) -> Optional[str]:
    """Why a file cannot be written at ``path`` (a folder there, no folder to hold it), or None."""
    try:
        if path.is_dir():
            return "is a folder"
        if not path.parent.is_dir():
            return f"cannot be written: {path.parent} is not a folder"
    except OSError as error:  # a name too long, a loop of links
        return f"cannot be written: {error.strerror or error}"
    return None


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="antlr-report", description=DESCRIPTION)
    parser.add_argument("paths", nargs="+", help="multirun folders (or any folders holding job folders)")
    parser.add_argument(
        "--by",
        nargs="+",
        help="config keys to group by (default: method.name, loss.name and what varies; "
        "task.name and loss.name are kept wherever the jobs differ in them)",
    )
    parser.add_argument("--metrics", nargs="+", help=f"summary keys (default: {', '.join(DEFAULT_METRICS)})")
    parser.add_argument(
        "--format", choices=FORMATS, default="markdown", help="how the table is printed (default: markdown)"
    )
    parser.add_argument("--csv", type=Path, help="also write the table as CSV to this file")
    args = parser.parse_args(argv)
    for path in args.paths:
        if not Path(path).is_dir():
            parser.exit(2, f"antlr-report: error: {path} is not a folder\n")
    why = _unwritable(args.csv) if args.csv else None
    if why:
        parser.exit(2, f"antlr-report: error: --csv {args.csv} {why}; accepted: a file in an existing folder\n")
    jobs = scan(args.paths)
    try:
        check_keys(jobs.finished, args.by, args.metrics)
    except ReportError as error:
        parser.exit(2, f"antlr-report: error: {error}\n")
    for line in problems(jobs):
        print(f"antlr-report: {line}", file=sys.stderr)
    rows = aggregate(args.paths, args.by, args.metrics, jobs=jobs.finished)
    if not rows:
        parser.exit(
            2,
            f"antlr-report: error: no finished jobs (summary.json with .hydra/config.yaml) below {', '.join(args.paths)}\n",
        )
    print(render(rows, args.format))
    if args.csv:
        try:
            args.csv.write_text(render(rows, "csv") + "\n")
        except OSError as error:
            parser.exit(2, f"antlr-report: error: --csv {args.csv} cannot be written: {error.strerror or error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
