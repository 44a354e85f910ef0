"""Renders report.html again for an existing run, from its MLMD and artifacts (`selfsup report RUN_DIR`).

The report is the one EvaluationReportGen writes inside the pipeline, built from the outputs (Evaluator,
Trainers, ImageExampleGen, Pusher) of the run summary.json names, else the newest in MLMD, and written
to RUN_DIR/report.html.
"""

import json
import os
from typing import Dict

import ml_metadata as mlmd

from components.evaluation_report.executor import REPORT_FILE
from components.evaluation_report.html_report import render_html
from components.evaluation_report.report_data import ReportInputs, collect_report_data
from pipeline.results.run_results import latest_run_id, open_store, run_results
from pipeline.results.summary import SUMMARY_FILE, production_summary, pushed_destination, single_output

METADATA_FILE = "metadata.sqlite"
# ReportInputs field -> (component id, output key) in the pipeline (pipeline/pipeline.py).
_REPORT_INPUT_OUTPUTS = {
    "evaluation_uri": ("Evaluator", "evaluation"),
    "blessing_uri": ("Evaluator", "blessing"),
    "candidate_model_uri": ("CandidateTrainer", "model"),
    "baseline_model_uri": ("BaselineTrainer", "model"),
    "ingest_report_uri": ("ImageExampleGen", "report"),
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
    report_path = os.path.join(run_dir, REPORT_FILE)
    with open(report_path, "w", encoding="utf-8") as handle:
        handle.write(render_html(collect_report_data(report_inputs(results))))
    return report_path


def _summary_field(run_dir: str, key: str):
    summary_path = os.path.join(run_dir, SUMMARY_FILE)
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
        raise ValueError(f"cannot tell which pipeline to report on: {SUMMARY_FILE} names none and MLMD has {names}")
    return names[0]


def report_inputs(results: Dict[str, Dict]) -> ReportInputs:
    """The report's input folders from a run's outputs (pipeline.results.run_results.run_results).

    Raises:
      ValueError: an output the report needs is missing (e.g. the run failed before the Evaluator).
    """
    uris = {}
    for field, (component, key) in _REPORT_INPUT_OUTPUTS.items():
        artifact = single_output(results, component, key)
        if artifact is None:
            raise ValueError(f"the run has no {component} output {key!r}: the report needs an evaluation")
        uris[field] = artifact.uri
    # With evaluation.compare_to_pushed the decision is BlessingGate's and there is a second evaluation.
    gate_blessing = single_output(results, "BlessingGate", "blessing")
    if gate_blessing is not None:
        uris["blessing_uri"] = gate_blessing.uri
    production_evaluation = single_output(results, "ProductionEvaluator", "evaluation")
    production = production_summary(results)
    comparison = single_output(results, "PairedComparison", "comparison")
    pretrained = single_output(results, "Pretrainer", "model")
    examples = single_output(results, "ImageExampleGen", "examples")
    return ReportInputs(
        **uris,
        comparison_uri=comparison.uri if comparison is not None else None,
        pretrained_model_uri=pretrained.uri if pretrained is not None else None,
        examples_uri=examples.uri if examples is not None else None,
        pushed_to=pushed_destination(results),
        production_evaluation_uri=production_evaluation.uri if production_evaluation is not None else None,
        production_model=production["production_model"] if production else None,
    )
