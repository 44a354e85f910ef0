"""Runs the pipeline with LocalDagRunner (Beam direct runner, MLMD in SQLite) and writes summary.json.

Output folder layout:
    OUTPUT/tfx/             every artifact (the pipeline root)
    OUTPUT/metadata.sqlite  MLMD
    OUTPUT/serving/         models pushed by the Pusher (only blessed ones)
    OUTPUT/summary.json     the decision, both accuracies, data counts
"""

import json
import logging
import os
from typing import Any, Dict

from tfx import v1 as tfx

from components.image_example_gen.sources import plan_source
from pipeline import summary as summary_lib
from pipeline.config import Config
from pipeline.pipeline import create_pipeline, data_config_json
from pipeline.run_results import latest_run, open_store


def output_paths(output_dir: str) -> Dict[str, str]:
    output_dir = os.path.abspath(output_dir)
    return {
        "output": output_dir,
        "pipeline_root": os.path.join(output_dir, "tfx"),
        "metadata": os.path.join(output_dir, "metadata.sqlite"),
        "serving": os.path.join(output_dir, "serving"),
        "summary": os.path.join(output_dir, summary_lib.SUMMARY_FILE),
    }


def check_data_before_running(config: Config) -> None:
    """Checks the data layout/source now (raises ValueError naming the problem), before any Beam work."""
    plan_source(json.loads(data_config_json(config)))


def run_local(config: Config, output_dir: str) -> Dict[str, Any]:
    """Runs the whole pipeline locally; returns (and writes) the summary.

    Raises:
      ValueError: a bad data folder/source, before the pipeline starts.
      RuntimeError: a component failed (the summary is still written, with the failure).
    """
    paths = output_paths(output_dir)
    data_location = os.path.abspath(config.data.path) if config.data.path else None
    if data_location and (paths["output"] + os.sep).startswith(data_location.rstrip(os.sep) + os.sep):
        raise ValueError(f"the output folder {paths['output']} must not be inside the data folder {data_location}")
    check_data_before_running(config)
    os.makedirs(paths["output"], exist_ok=True)
    pipeline = create_pipeline(
        config=config,
        pipeline_root=paths["pipeline_root"],
        serving_dir=paths["serving"],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(paths["metadata"]),
    )
    failure = None
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception as error:  # the run failed in a component: still say what happened
        logging.exception("pipeline run failed")
        failure = f"{type(error).__name__}: {error}"
    results = latest_run(open_store(paths["metadata"]), config.pipeline.name) or {}
    summary = summary_lib.build_summary(config, results, failure)
    summary_lib.publish_report(summary, paths["output"])
    summary_lib.write_summary(summary, paths["summary"])
    if failure:
        raise RuntimeError(f"pipeline run failed: {failure} (summary: {paths['summary']})")
    return summary
