"""``frugalvision report RUN_DIR``: a self-contained HTML page (config, metrics, cost, figures) of a run."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a run folder",
        description="One HTML file with the run's summary, learning curves, weight histograms, first-layer filters, "
        "cost table, per-epoch metrics and configuration. Figures are embedded; no external assets, no scripts.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a frugalvision run folder")
    p.add_argument("--output", help="HTML file to write (default RUN_DIR/report.html)")
    p.add_argument("--title", help="page title (default: the run folder's name)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..analysis.report import write_report

    path = write_report(args.run_dir, args.output, title=args.title)
    print(f"wrote {path}")
    return 0
