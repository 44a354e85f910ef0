"""The `selfsup report RUN_DIR` command: argument parsing and exit codes (pipeline/results/report.py does the work)."""

import argparse
import sys


def add_report_parser(subparsers) -> None:
    """Adds the `report` command to the CLI's subparsers."""
    parser = subparsers.add_parser("report", help="render report.html again for an existing run")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run's output folder (holds metadata.sqlite)")


def run_report(args: argparse.Namespace) -> int:
    """Runs the `report` command: 0 when written, 2 when RUN_DIR holds no finished evaluation."""
    # Imported here, as in cli.main, so that building the parser does not load TensorFlow.
    from pipeline.results.report import render_report_for_run

    try:
        path = render_report_for_run(args.run_dir)
    except ValueError as error:
        print(f"selfsup: error: {error}", file=sys.stderr)
        return 2
    print(f"selfsup: report written to {path}")
    return 0
