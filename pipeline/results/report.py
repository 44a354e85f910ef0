"""Renders report.html again for an existing run, from its MLMD and artifacts (`selfsup report RUN_DIR`).

The report is the one EvaluationReportGen writes inside the pipeline, built from the outputs (Evaluator,
Trainers, ImageExampleGen, Pusher) of the run summary.json names, else the newest in MLMD, and written
to RUN_DIR/report.html.
"""

import json
import os
from typing import Dict

import ml_metadata as mlmd

from components.evaluation_report.html_report import render_html
from components.evaluation_report.report_data import REQUIRED_INPUTS, ReportInputs, collect_report_data
from components.evaluation_report.run_outputs import pushed_destination, pushed_production_model
from pipeline.results.run_results import latest_run_id, open_store, run_results, single_output
from trainer import contract

METADATA_FILE = "metadata.sqlite"
# ReportInputs field -> (component id, output key) in the pipeline (pipeline/pipeline.py).
_REPORT_INPUT_OUTPUTS = {
    "evaluation_uri": (contract.EVALUATOR, "evaluation"),
    "blessing_uri": (contract.EVALUATOR, "blessing"),
    "candidate_model_uri": (contract.CANDIDATE_TRAINER, "model"),
    "baseline_model_uri": (contract.BASELINE_TRAINER, "model"),
    "ingest_report_uri": (contract.IMAGE_EXAMPLE_GEN, "report"),
    "production_evaluation_uri": (contract.PRODUCTION_EVALUATOR, "evaluation"),
    "comparison_uri": (contract.PAIRED_COMPARISON, "comparison"),
    "pretrained_model_uri": (contract.PRETRAINER, "model"),
    "examples_uri": (contract.IMAGE_EXAMPLE_GEN, "examples"),
}


def render_report_for_run(run_dir: str) -> str:
    """Writes RUN_DIR/report.html for the run summary.json names (else the newest in RUN_DIR/metadata.sqlite).

    Returns:
      The report's path.

    Raises:
      ValueError: RUN_DIR is not a run's output folder, or its latest run has no evaluation.
    """
    run_dir = os.path.abspath(run_dir)
    metadata_path = os.path.join(run_dir, METADATA_FILE)
    if not os.path.isfile(metadata_path):
        raise ValueError(f"{run_dir} is not a selfsup run folder: it has no {METADATA_FILE}")
    store = open_store(metadata_path)
    pipeline_name = _pipeline_name(run_dir, store)
    run_id = _summary_field(run_dir, "run_id") or latest_run_id(store, pipeline_name)
    results = run_results(store, pipeline_name, run_id) if run_id else None
    if not results:
        raise ValueError(f"{metadata_path} records no run of pipeline {pipeline_name!r}")
    report_path = os.path.join(run_dir, contract.REPORT_FILE)
    with open(report_path, "w", encoding="utf-8") as handle:
        handle.write(render_html(collect_report_data(report_inputs(results))))
    return report_path


def _summary_field(run_dir: str, key: str):
    summary_path = os.path.join(run_dir, contract.SUMMARY_FILE)
    if not os.path.isfile(summary_path):
        return None
    with open(summary_path, encoding="utf-8") as handle:
        return json.load(handle).get(key)


def _pipeline_name(run_dir: str, store: mlmd.MetadataStore) -> str:
    """The pipeline name from summary.json, else the only pipeline recorded in MLMD."""
    name = _summary_field(run_dir, "pipeline_name")
    if name:
        return name
    names = [context.name for context in store.get_contexts_by_type("pipeline")]
    if len(names) != 1:
        raise ValueError(f"cannot tell which pipeline to report on: {contract.SUMMARY_FILE} names none and MLMD "
                         f"has {names}")
    return names[0]


def report_inputs(results: Dict[str, Dict], required: bool = True, examples: bool = True) -> ReportInputs:
    """The report's inputs from a run's outputs in MLMD (pipeline.results.run_results.run_results).

    Args:
      results: the run's component states and outputs.
      required: raise when an output the report needs (report_data.REQUIRED_INPUTS) is missing; else such
        an input is None (summary.json of a run that stopped early).
      examples: include ImageExampleGen's examples (then the report's misclassified grid predicts eval images).

    Raises:
      ValueError: `required` and an output the report needs is missing (e.g. the run failed before the
        Evaluator).
    """
    uris = {}
    for field, (component, key) in _REPORT_INPUT_OUTPUTS.items():
        artifact = single_output(results, component, key)
        if artifact is None and required and field in REQUIRED_INPUTS:
            raise ValueError(f"the run has no {component} output {key!r}: the report needs an evaluation")
        uris[field] = artifact.uri if artifact is not None else None
    # With evaluation.compare_to_pushed or require_significant the Pusher's blessing is BlessingGate's.
    gate_blessing = single_output(results, contract.BLESSING_GATE, "blessing")
    if gate_blessing is not None:
        uris["blessing_uri"] = gate_blessing.uri
    if not examples:
        uris["examples_uri"] = None
    production_model = single_output(results, contract.PRODUCTION_MODEL, "model")
    return ReportInputs(
        **uris,
        pushed_to=pushed_destination(results.get(contract.PUSHER, {}).get("outputs", {}).get("pushed_model", [])),
        production_model=pushed_production_model([production_model] if production_model is not None else []),
    )
