"""The `selfsup` command line.

    selfsup run --data DIR --output DIR [--config FILE] [--method simclr|simsiam|byol] [--label-budgets N ...]
    selfsup demo [--output DIR] [--method ...]
    selfsup report RUN_DIR
    selfsup embed --model RUN_DIR|ENCODER_DIR --data FOLDER --output FILE.parquet|FILE.npz
    selfsup compile-kubeflow --config FILE --output FILE.yaml [--image IMAGE]
"""

import argparse
import logging
import os
import sys
import warnings
from typing import List, Optional

from kubeflow.cli import add_compile_kubeflow_parser, run_compile_kubeflow
from pipeline.embed import add_embed_parser, run_embed
from pipeline.report_command import add_report_parser, run_report

DEMO_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "demo.yaml")


def _quiet_libraries() -> None:
    """Keeps TensorFlow/Google client start-up noise out of the user's terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


class _ProgressFilter(logging.Filter):
    """Lets warnings and errors through, and of the INFO lines only the components' progress."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            message = str(record.msg)
            return not (message.startswith(("ArtifactQuery.property_predicate", "From "))
                        or "triggered tf.function retracing" in message)
        message = str(record.msg)
        return message.startswith(("Component ", "Ingesting ", "Skipped ", "Ignored ", "Dropped ", "Kept "))


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    handler.addFilter(_ProgressFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfsup", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the pipeline on your images with LocalDagRunner")
    run.add_argument("--data", help="data folder (overrides data.path)")
    run.add_argument("--output", required=True, help="output folder: artifacts, MLMD, serving/, summary.json")
    run.add_argument("--config", help="YAML config file (defaults apply to keys it leaves out)")
    run.add_argument("--method", choices=["simclr", "simsiam", "byol"], help="overrides training.method")
    run.add_argument("--label-budgets", type=int, nargs="+", metavar="N",
                     help="run once per budget (labels per class, e.g. 5 10 25 100) into OUTPUT/labels-N and "
                          "compare candidate and baseline in OUTPUT/label_efficiency.html")

    demo = commands.add_parser("demo", help="run the pipeline on the built-in digits dataset")
    demo.add_argument("--output", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--method", choices=["simclr", "simsiam", "byol"], help="overrides training.method")

    add_report_parser(commands)
    add_embed_parser(commands)
    add_compile_kubeflow_parser(commands)
    return parser


def _print_summary(summary: dict, output: str) -> None:
    print("\n" + "=" * 78)
    print(f"selfsup: {summary['decision']}")
    data = summary.get("data") or {}
    for split, counts in (data.get("splits") or {}).items():
        duplicates = counts.get("duplicates_of_eval", 0)
        copies = f", {duplicates} copies of eval images" if duplicates else ""
        print(f"  {split:>9}: {counts['read']} images read, {counts['written']} used, "
              f"{counts['skipped']} skipped{copies}")
    if data.get("ignored_non_image_files"):
        print(f"  ignored: {len(data['ignored_non_image_files'])} files without an image extension")
    if data.get("links_not_followed"):
        print(f"  symbolic links not followed: {len(data['links_not_followed'])}")
    if data.get("skipped") or data.get("ignored_non_image_files") or (data.get("eval_duplicates") or {}).get("count"):
        print(f"  every skipped, ignored or duplicate file is listed in {data['ingest_report']}")
    if (data.get("input") or {}).get("ingestion"):
        print(f"  ingestion: {data['input']['ingestion']}")
    if summary.get("report"):
        print(f"  report: {summary['report']}")
    print(f"  summary: {os.path.join(output, 'summary.json')}")
    print("=" * 78)


def _print_budgets(comparison: dict, output: str) -> None:
    print("\n" + "=" * 78)
    print(f"selfsup: label efficiency of {comparison['method']} (TFMA accuracy on the eval split)")
    print(f"  {'labels/class':>12} {'candidate':>10} {'baseline':>10} {'difference':>11}  decision")
    for row in comparison["runs"]:
        difference = row["candidate_accuracy"] - row["baseline_accuracy"]
        print(f"  {row['labels_per_class']:>12} {row['candidate_accuracy']:>10.4f} {row['baseline_accuracy']:>10.4f} "
              f"{difference:>+11.4f}  {'BLESSED' if row['blessed'] else 'NOT BLESSED'}")
    print(f"  chart and links to each run's report: {os.path.join(os.path.abspath(output), 'label_efficiency.html')}")
    print("=" * 78)


def main(argv: Optional[List[str]] = None) -> int:
    _quiet_libraries()
    args = _build_parser().parse_args(argv)
    _configure_logging()
    if args.command == "compile-kubeflow":
        return run_compile_kubeflow(args)
    if args.command == "report":
        return run_report(args)
    if args.command == "embed":
        return run_embed(args)

    from pipeline.config import ConfigError, load_config

    overrides = {}
    if args.method:
        overrides["training.method"] = args.method
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        print(f"selfsup: error: --output {args.output} is an existing file, not a folder", file=sys.stderr)
        return 2
    try:
        if args.command == "demo":
            from pipeline.demo_data import write_digits_dataset

            data_dir = os.path.join(os.path.abspath(args.output), "data")
            if not os.path.isdir(data_dir):
                counts = write_digits_dataset(data_dir)
                print(f"[selfsup] wrote the digits demo dataset to {data_dir}: {counts}", flush=True)
            overrides["data.path"] = data_dir
            config = load_config(DEMO_CONFIG, overrides)
        else:
            if args.data:
                overrides["data.path"] = args.data
            config = load_config(args.config, overrides)
            if args.label_budgets:
                from pipeline.label_efficiency import check_budgets

                check_budgets(args.label_budgets)
    except (ConfigError, FileNotFoundError) as error:
        print(f"selfsup: error: {error}", file=sys.stderr)
        return 2

    from pipeline.local_runner import run_local

    try:
        if getattr(args, "label_budgets", None):
            from pipeline.label_efficiency import run_budgets

            _print_budgets(run_budgets(config, args.output, args.label_budgets), args.output)
        else:
            _print_summary(run_local(config, args.output), os.path.abspath(args.output))
    except ValueError as error:
        print(f"selfsup: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"selfsup: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
