"""``frugalvision report RUN_DIR``: a self-contained HTML page (config, metrics, cost, figures) of a run."""

from __future__ import annotations

import argparse

from .options import check_output_path

HELP = "write a self-contained HTML report of a run folder"
DESCRIPTION = ("One HTML file with the run's summary, learning curves, weight histograms, first-layer filters, cost "
               "table, per-epoch metrics and configuration. Figures are embedded; no external assets, no scripts.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a frugalvision run folder")
    p.add_argument("--output", help="HTML file to write (default RUN_DIR/report.html)")
    p.add_argument("--title", help="page title (default: the run folder's name)")
    p.add_argument("--json", action="store_true", help="print one JSON object (the file written)")


def run(args: argparse.Namespace) -> int:
    from ..analysis.report import write_report
    check_output_path(args.output, "--output", suffixes=(".html", ".htm"))  # the default lies in the run folder
    path = write_report(args.run_dir, args.output, title=args.title)
    if args.json:
        import json

        print(json.dumps({"run_dir": str(args.run_dir), "output": str(path)}))
    else:
        print(f"wrote {path}")
    return 0
