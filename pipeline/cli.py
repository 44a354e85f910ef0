"""The `selfsup` command line.

    selfsup [-q | -v] run --data DIR --output DIR [--config FILE] [--method simclr|simsiam|byol]
        [--set KEY=VALUE ...] [--label-budgets N ...] [--require-blessed] [--json]
    selfsup [-q | -v] demo [--output DIR] [--method ...] [--set KEY=VALUE ...] [--require-blessed] [--json]
    selfsup report RUN_DIR
    selfsup embed --model RUN_DIR|ENCODER_DIR --data FOLDER --output FILE.parquet|FILE.npz
    selfsup compile-kubeflow --config FILE --output FILE.yaml [--image IMAGE]
    selfsup --version

Progress and logs go to stderr, the result (the summary block, or summary.json with --json) to stdout. By default
stderr shows the `selfsup` logger's lines (trainer/log.py) and TFX's component lines, chosen by where a record comes
from (its logger and module), never by its wording; -q shows only warnings and errors, -v every library's INFO.
"""

import argparse
import contextlib
import datetime
import json
import logging
import os
import sys
import warnings
from typing import Iterator, List, Optional, TextIO

from pipeline.embed import add_embed_parser, run_embed
from pipeline.results.report_command import add_report_parser, run_report
from selfsup_kubeflow.cli import add_compile_kubeflow_parser, run_compile_kubeflow
from trainer import contract, log, versions
from trainer.hparams import METHODS, ConfigError

LOG = log.get(__name__)

DEMO_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "demo.yaml")
CONFIG_FILE = "config.yaml"  # the effective config of the run, written to OUTPUT at its start

EXIT_SUCCESS, EXIT_COMPONENT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_BLESSED = 0, 1, 2, 3
EXIT_CODES = f"""exit codes of run and demo:
  {EXIT_SUCCESS}  the run finished: blessed, or not blessed without --require-blessed
  {EXIT_COMPONENT_FAILED}  a pipeline component failed (summary.json says which and why)
  {EXIT_BAD_INPUT}  bad configuration, data or arguments, or OUTPUT in use: nothing ran
  {EXIT_NOT_BLESSED}  the run finished, the candidate was NOT BLESSED and --require-blessed was given
     (with --label-budgets: some budget's candidate was not blessed)"""
QUIET, DEFAULT, VERBOSE = "quiet", "default", "verbose"

# TFX's component lines ("Component X is running.", "Component X: done in 95.2 s" as pipeline.local_runner's
# ComponentLines rewrites them) are the records of LocalDagRunner's module whose first argument is the component's
# id (a str); the module's other INFO records (the whole deployment config, a proto) are not shown by default.
TFX_RUNNER_MODULE = "tfx/orchestration/local/local_dag_runner.py"
# Warnings every run logs and no user can act on, by the library module that logs them (shown with -v):
NOISE_MODULES = (
    "tensorflow/python/util/deprecation.py",  # "From ...: ... is deprecated": TF, TFX and TFMA calling TF's old APIs
    "tensorflow/python/eager/polymorphic_function/polymorphic_function.py",  # "... triggered tf.function retracing"
    "tfx/orchestration/portable/input_resolution/channel_resolver.py",  # "...property_predicate is not supported."
)


def version_line() -> str:
    found = {name: version or "not installed" for name, version in versions.package_versions().items()}
    return (f"selfsup {found['selfsup']} (TFX {found['tfx']}, TensorFlow {found['tensorflow']}, "
            f"Keras {found['keras']}, Python {versions.python_version()})")


def _quiet_libraries() -> None:
    """Keeps TensorFlow/Google client start-up noise out of the user's terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def _from_module(record: logging.LogRecord, module: str) -> bool:
    """The record was logged by the library module `module` ("tfx/orchestration/...py")."""
    return ("/" + record.pathname.replace(os.sep, "/")).endswith("/" + module)


def _is_selfsup(record: logging.LogRecord) -> bool:
    return record.name == log.NAME or record.name.startswith(log.NAME + ".")


def _is_tfx_component_line(record: logging.LogRecord) -> bool:
    args = record.args if isinstance(record.args, tuple) else ()
    return _from_module(record, TFX_RUNNER_MODULE) and bool(args) and isinstance(args[0], str)


class _ShownByDefault(logging.Filter):
    """Warnings and errors (but those of NOISE_MODULES), and INFO records of the `selfsup` logger and TFX's
    component lines: chosen by the record's logger and module, never by its wording."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return record.levelno >= logging.ERROR or not any(_from_module(record, module) for module in NOISE_MODULES)
        return _is_selfsup(record) or _is_tfx_component_line(record)


def _configure_logging(verbosity: str = DEFAULT) -> None:
    """One stderr handler on the root logger: warnings and errors only (quiet), those and the INFO lines of
    `selfsup` and TFX's component lines (default), or every INFO line of every library, TFX's and Beam's
    included (verbose)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(log.FORMAT, datefmt=log.DATE_FORMAT))
    if verbosity != VERBOSE:
        handler.addFilter(_ShownByDefault())
    level = logging.WARNING if verbosity == QUIET else logging.INFO
    handler.setLevel(level)  # also for loggers with their own level, whose records reach the root's handlers
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    log.set_level(level)


def _add_verbosity_flags(parser: argparse.ArgumentParser, default) -> None:
    """-q/--quiet and -v/--verbose, before the command (default False) or after it (default SUPPRESS, so
    that `selfsup -q run` is not undone by the command's own default)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="print only warnings, errors and the final result")
    group.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="print every INFO log line, TFX's and Beam's too")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options `run` and `demo` share."""
    parser.add_argument("--method", choices=METHODS, help="overrides training.method")
    parser.add_argument("--set", action="append", dest="settings", default=[], metavar="KEY=VALUE",
                        help="override one config key, VALUE read as YAML, checked like the config file "
                             "(repeatable: --set training.pretrain_epochs=5 --set data.eval_fraction=0.1)")
    parser.add_argument("--require-blessed", action="store_true",
                        help=f"exit with {EXIT_NOT_BLESSED} when the run finished but the candidate was NOT BLESSED")
    parser.add_argument("--json", action="store_true",
                        help="print summary.json (with --label-budgets label_efficiency.json) to stdout "
                             "instead of the summary block")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfsup", description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXIT_CODES + "\nreport, embed and compile-kubeflow exit with 0 on success, 2 on a bad argument or input")
    parser.add_argument("--version", action="version", version=version_line())
    _add_verbosity_flags(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the pipeline on your images with LocalDagRunner", epilog=EXIT_CODES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--data", help="data folder (overrides data.path)")
    run.add_argument("--output", required=True,
                     help="output folder: artifacts, MLMD, serving/, config.yaml, summary.json")
    run.add_argument("--config", help="YAML config file (defaults apply to keys it leaves out)")
    _add_run_options(run)
    run.add_argument("--label-budgets", type=int, nargs="+", metavar="N",
                     help="run once per budget (labels per class, e.g. 5 10 25 100) into OUTPUT/labels-N and "
                          "compare candidate and baseline in OUTPUT/label_efficiency.html")

    demo = commands.add_parser("demo", help="run the pipeline on the built-in digits dataset", epilog=EXIT_CODES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--output", default="runs/demo", help="output folder (default: runs/demo)")
    _add_run_options(demo)

    add_report_parser(commands)
    add_embed_parser(commands)
    add_compile_kubeflow_parser(commands)
    for command in commands.choices.values():
        _add_verbosity_flags(command, default=argparse.SUPPRESS)
    return parser


def _verbosity(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    if args.quiet and args.verbose:  # one before the command, the other after it
        parser.error("-q/--quiet and -v/--verbose exclude each other")
    return QUIET if args.quiet else VERBOSE if args.verbose else DEFAULT


def write_effective_config(config, output_dir: str) -> str:
    """Writes OUTPUT/config.yaml: the whole validated config, every default filled in; `--config` reads it back
    as the same Config. Holds OUTPUT's lock while writing, so a run already writing there is not touched
    (OutputInUseError, a ValueError)."""
    import yaml

    from pipeline.run_lock import output_lock

    output_dir = os.path.abspath(output_dir)
    path = os.path.join(output_dir, CONFIG_FILE)
    with output_lock(output_dir):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(f"# The effective config of the selfsup run started "
                         f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ} into {output_dir}\n"
                         f"# ({version_line()}); run it again with --config {path}\n")
            yaml.safe_dump(config.to_dict(), handle, sort_keys=False, default_flow_style=False)
    return path


@contextlib.contextmanager
def run_prints_to_stderr(quiet: bool) -> Iterator[None]:
    """What the in-process pipeline prints to stdout (the Trainers' print() lines and Keras's epoch lines,
    both through sys.stdout) goes to stderr, or nowhere when quiet, so that stdout holds only the result.

    Also at the file-descriptor level: fd 1 points at stderr (or /dev/null) for the block, which catches
    writers that kept a reference to the original sys.stdout, C-level writes and child processes (Beam's
    multi_processing workers). When quiet, sys.stderr is /dev/null too, so that no progress bar is drawn
    (trainer/progress.py draws on sys.stderr when it is a terminal); the log handler keeps the real stderr, so
    warnings and errors still show.
    """
    target: TextIO = open(os.devnull, "w", encoding="utf-8") if quiet else sys.stderr
    target_fd = target.fileno() if quiet else 2
    streams = {sys.stdout, sys.__stdout__} - {None}
    for stream in streams:
        stream.flush()
    try:
        saved_fd = os.dup(1)
    except OSError:  # stdout is closed: nothing to redirect at that level
        saved_fd = None
    try:
        if saved_fd is not None:
            os.dup2(target_fd, 1)
        with contextlib.redirect_stdout(target), \
                (contextlib.redirect_stderr(target) if quiet else contextlib.nullcontext()):
            yield
    finally:
        for stream in streams | {target}:
            stream.flush()
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)
        if quiet:
            target.close()


def _print_summary(summary: dict, output: str) -> None:
    from pipeline.results.summary import resolve_path  # summary.json's paths are relative to OUTPUT

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
        print(f"  every skipped, ignored or duplicate file is listed in {resolve_path(data['ingest_report'], output)}")
    if (data.get("input") or {}).get("ingestion"):
        print(f"  ingestion: {data['input']['ingestion']}")
    if summary.get("report"):
        print(f"  report: {resolve_path(summary['report'], output)}")
    print(f"  summary: {os.path.join(output, contract.SUMMARY_FILE)}")
    print("=" * 78)


def _print_budgets(comparison: dict, output: str) -> None:
    from pipeline.results.label_efficiency import HTML_FILE

    print("\n" + "=" * 78)
    print(f"selfsup: label efficiency of {comparison['method']} (TFMA accuracy on the eval split)")
    print(f"  {'labels/class':>12} {'candidate':>10} {'baseline':>10} {'difference':>11}  decision")
    for row in comparison["runs"]:
        difference = row["candidate_accuracy"] - row["baseline_accuracy"]
        print(f"  {row['labels_per_class']:>12} {row['candidate_accuracy']:>10.4f} {row['baseline_accuracy']:>10.4f} "
              f"{difference:>+11.4f}  {'BLESSED' if row['blessed'] else 'NOT BLESSED'}")
    print(f"  chart and links to each run's report: {os.path.join(os.path.abspath(output), HTML_FILE)}")
    print("=" * 78)


def main(argv: Optional[List[str]] = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    verbosity = _verbosity(parser, args)
    if verbosity != VERBOSE:
        _quiet_libraries()
    _configure_logging(verbosity)
    if args.command == "compile-kubeflow":
        return run_compile_kubeflow(args)
    if args.command == "report":
        return run_report(args)
    if args.command == "embed":
        return run_embed(args)

    return run_pipeline_command(args, verbosity)


def run_pipeline_command(args: argparse.Namespace, verbosity: str) -> int:
    """`selfsup run` and `selfsup demo`: validate everything, write OUTPUT/config.yaml, run, print the result."""
    from pipeline import local_runner
    from pipeline.config import load_config

    if os.path.exists(args.output) and not os.path.isdir(args.output):
        print(f"selfsup: error: --output {args.output} is an existing file, not a folder", file=sys.stderr)
        return EXIT_BAD_INPUT
    overrides = {"training.method": args.method} if args.method else {}
    budgets = getattr(args, "label_budgets", None)
    demo_data = os.path.join(os.path.abspath(args.output), "data") if args.command == "demo" else None
    try:
        if demo_data:
            config = load_config(DEMO_CONFIG, dict(overrides, **{"data.path": demo_data}), args.settings)
        else:
            if args.data:
                overrides["data.path"] = args.data
            config = load_config(args.config, overrides, args.settings)
            if budgets:
                from pipeline.results.label_efficiency import check_budgets

                check_budgets(budgets)
    except (ConfigError, FileNotFoundError) as error:
        print(f"selfsup: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if demo_data and not os.path.isdir(demo_data):
        from pipeline.demo_data import write_digits_dataset

        counts = write_digits_dataset(demo_data)
        LOG.info("wrote the digits demo dataset to %s: %s", demo_data, counts)

    try:
        local_runner.check_before_running(config, args.output)  # before config.yaml creates OUTPUT
        write_effective_config(config, args.output)
        with run_prints_to_stderr(quiet=verbosity == QUIET):
            if budgets:
                from pipeline.results.label_efficiency import run_budgets

                result = run_budgets(config, args.output, budgets)
            else:
                result = local_runner.run_local(config, args.output)
    except ValueError as error:
        print(f"selfsup: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RuntimeError as error:
        print(f"selfsup: {error}", file=sys.stderr)
        return EXIT_COMPONENT_FAILED
    if args.json:
        print(json.dumps(result, indent=2))
    elif budgets:
        _print_budgets(result, args.output)
    else:
        _print_summary(result, os.path.abspath(args.output))
    blessed = all(row["blessed"] for row in result["runs"]) if budgets else result["blessed"]
    return EXIT_NOT_BLESSED if args.require_blessed and not blessed else EXIT_SUCCESS


if __name__ == "__main__":
    sys.exit(main())
