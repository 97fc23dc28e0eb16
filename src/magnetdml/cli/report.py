"""``magnetdml report DIR``: one HTML page (self-contained) and one Markdown page for a run
folder or an experiment folder; see :mod:`magnetdml.reporting.report`."""

from __future__ import annotations

import argparse

from ._common import Command


def configure(parser: argparse.ArgumentParser) -> None:
    from ..reporting.report import FORMATS

    parser.add_argument(
        "folder",
        metavar="DIR",
        help="a run folder ('magnetdml train --out') "
        "or an experiment folder ('magnetdml experiment')",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="both",
        help="report.html (PNGs embedded), report.md (PNG links), or both",
    )
    parser.add_argument("--out", help="folder for the pages (default: DIR itself)")


def run_report(args: argparse.Namespace) -> int:
    from ..reporting.report import write_report

    for path in write_report(args.folder, out_dir=args.out, formats=args.format):
        print(f"wrote {path}")
    return 0


COMMAND = Command(
    "report",
    "gather a run or experiment folder into report.html and report.md",
    configure,
    run_report,
)
