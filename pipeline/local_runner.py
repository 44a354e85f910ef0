"""Runs the pipeline with LocalDagRunner (Beam direct runner, MLMD in SQLite) and writes summary.json.

Output folder layout:
    OUTPUT/tfx/             every artifact (the pipeline root)
    OUTPUT/metadata.sqlite  MLMD
    OUTPUT/serving/         models pushed by the Pusher (only blessed ones)
    OUTPUT/summary.json     the decision, both accuracies, data counts
    OUTPUT/.selfsup.lock    held while a run writes here (a second run into OUTPUT fails at once)
"""

import datetime
import logging
import os
from typing import Any, Dict, Optional

from tfx import v1 as tfx
from tfx.dsl.compiler import compiler, constants
from tfx.orchestration.portable import runtime_parameter_utils

from components.image_example_gen.ingest import check_eval_per_class
from components.image_example_gen.sources import plan_source
from pipeline.config import Config
from pipeline.pipeline import check_image_example_gen_training, create_pipeline
from pipeline.results import summary as summary_lib
from pipeline.results.run_results import open_store, run_results
from pipeline.run_lock import output_lock
from trainer import contract, log

LOG = log.get(__name__)


def output_paths(output_dir: str, results_dir: Optional[str] = None) -> Dict[str, str]:
    """Where a run writes: artifacts and MLMD under `output_dir`; the summary, the report and the
    serving folder under `results_dir` (default: `output_dir`; `--label-budgets` gives each budget
    its own, sharing one pipeline root and one MLMD so that the encoder is pretrained once)."""
    output_dir = os.path.abspath(output_dir)
    results_dir = os.path.abspath(results_dir or output_dir)
    return {
        "output": output_dir,
        "results": results_dir,
        "pipeline_root": os.path.join(output_dir, "tfx"),
        "metadata": os.path.join(output_dir, "metadata.sqlite"),
        "serving": os.path.join(results_dir, "serving"),
        "summary": os.path.join(results_dir, contract.SUMMARY_FILE),
    }


def check_data_before_running(config: Config) -> None:
    """Checks the data layout/source now (raises ValueError naming the problem), before any Beam work:
    the layout, the eval images per class and, for folder data, that pretraining has a full batch."""
    plan = plan_source(config.data)
    if plan.eval_per_class is not None:
        check_eval_per_class(plan.eval_per_class, config.evaluation.min_eval_per_class, config.data.path)
    if plan.split_counts is not None and config.training.pretrain_epochs > 0:
        images = plan.split_counts[contract.UNLABELED_SPLIT] + plan.split_counts[contract.TRAIN_SPLIT]
        if images < config.training.batch_size:
            raise ValueError(
                f"{config.data.path} has {images} images for pretraining (unlabeled + train), fewer than one batch "
                f"of training.batch_size={config.training.batch_size}: set training.batch_size to at most {images} "
                "(e.g. --config with 'training: {batch_size: N}') or add unlabeled images"
            )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """A run id no other run shares: UTC time to the microsecond and the process id."""
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%S.%fZ}-{os.getpid()}"


def run_local(config: Config, output_dir: str) -> Dict[str, Any]:
    """Runs the whole pipeline locally; returns (and writes) the summary.

    Holds OUTPUT's lock for the whole run, and reads the summary from this run's MLMD context (by its
    run id), never from whichever run is newest.

    Raises:
      ValueError: a bad data folder/source or an output folder in use, before the pipeline starts.
      RuntimeError: a component failed (the summary is still written, with the failure).
    """
    paths = output_paths(output_dir)
    check_before_running(config, paths["output"])
    with output_lock(paths["output"]):
        return run_holding_lock(config, paths)


def check_before_running(config: Config, output_dir: str) -> None:
    """Everything that can be checked before any pipeline work (raises ValueError naming the problem)."""
    output_dir = os.path.abspath(output_dir)
    data_location = os.path.abspath(config.data.path) if config.data.path else None
    if data_location and (output_dir + os.sep).startswith(data_location.rstrip(os.sep) + os.sep):
        raise ValueError(f"the output folder {output_dir} must not be inside the data folder {data_location}")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"the output folder {output_dir} is an existing file, not a folder")
    check_image_example_gen_training(config.training)
    check_data_before_running(config)
    if config.training.init_encoder and "://" not in config.training.init_encoder:
        from trainer.encoder_artifact import check_compatible, read_description

        check_compatible(read_description(config.training.init_encoder), config.training,
                         config.training.init_encoder, "training.init_encoder")


class ComponentLines(logging.Filter):
    """Rewrites LocalDagRunner's "Component X is finished." as "Component X: CACHED" or "Component X: done in
    95.2 s" (a filter on the `absl` logger, which TFX logs through).

    It reads TFX 1.16's own records: LocalDagRunner logs "Component %s is running." and "Component %s is
    finished." around each component, and its launcher "A cached execution %d is used." in between when it
    reuses a cached result (tests/test_reruns.py fails if a TFX upgrade changes that wording).
    """

    def __init__(self):
        super().__init__()
        self._started: Dict[str, float] = {}
        self._cached = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Component %s is running." and record.args:
            self._started[record.args[0]], self._cached = record.created, False
        elif str(record.msg).startswith("A cached execution "):
            self._cached = True
        elif record.msg == "Component %s is finished." and record.args:
            component = record.args[0]
            seconds = record.created - self._started.pop(component, record.created)
            record.msg, record.args = (("Component %s: CACHED", (component,)) if self._cached
                                       else ("Component %s: done in %.1f s", (component, seconds)))
        return True


def run_pipeline_ir(pipeline_ir) -> None:
    """Runs a compiled pipeline with LocalDagRunner; each component's last line says CACHED or its duration."""
    lines, absl_logger = ComponentLines(), logging.getLogger("absl")
    absl_logger.addFilter(lines)
    try:
        tfx.orchestration.LocalDagRunner().run_with_ir(pipeline_ir)
    finally:
        absl_logger.removeFilter(lines)


def run_holding_lock(config: Config, paths: Dict[str, str]) -> Dict[str, Any]:
    """Runs the pipeline and writes the summary (the caller holds the output folder's lock); returns it as
    written, its paths relative to the results folder (pipeline.results.summary.with_relative_paths)."""
    os.makedirs(paths["results"], exist_ok=True)
    pipeline = create_pipeline(
        config=config,
        pipeline_root=paths["pipeline_root"],
        serving_dir=paths["serving"],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(paths["metadata"]),
    )
    run_id, started = new_run_id(), _now()
    pipeline_ir = compiler.Compiler().compile(pipeline)
    runtime_parameter_utils.substitute_runtime_parameter(
        pipeline_ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    failure = None
    try:
        run_pipeline_ir(pipeline_ir)
    except Exception as error:  # the run failed in a component: still say what happened
        LOG.exception("pipeline run failed")
        failure = f"{type(error).__name__}: {error}"
    store = open_store(paths["metadata"])
    results = run_results(store, config.pipeline.name, run_id) or {}
    summary = summary_lib.build_summary(config, results, failure, run_id=run_id, store=store)
    summary.update(started=started, finished=_now())
    summary_lib.publish_report(summary, paths["results"])
    summary = summary_lib.with_relative_paths(summary, paths["results"], paths["output"])
    summary_lib.write_summary(summary, paths["summary"])
    if failure:
        raise RuntimeError(f"pipeline run failed: {failure} (summary: {paths['summary']})")
    return summary
