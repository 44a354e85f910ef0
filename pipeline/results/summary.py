"""summary.json: what a run decided and why, a projection of the run's result model plus the components' states.

The result model is the report's (components/evaluation_report/report_data.collect_run_data): TFMA's output,
the blessing, the ingest report, the Trainers' histories and the comparisons, read from the artifacts MLMD
names for the run. The decision and its sentence are the report's (TFMA's thresholds), not derived again.
"""

import copy
import dataclasses
import json
import os
from typing import Any, Dict, Optional

import tensorflow as tf

from components.evaluation_report.report_data import collect_run_data, decision_text
from pipeline.config import Config
from pipeline.results.report import report_inputs
from pipeline.results.run_results import previous_property, single_output
from trainer import contract, log

LOG = log.get(__name__)


def run_data(results: Dict[str, Dict]) -> Dict[str, Any]:
    """The run's result model, without the misclassified eval images (both models would predict them again);
    the parts a run that stopped early did not produce are None. An evaluation the report cannot explain
    leaves the evaluation's parts None (the report component fails on it, and so does the run)."""
    inputs = report_inputs(results, required=False, examples=False)
    try:
        return collect_run_data(inputs, strict=False)
    except ValueError as error:
        LOG.warning("summary.json without the evaluation: %s", error)
        return collect_run_data(dataclasses.replace(inputs, evaluation_uri=None), strict=False)


def ingestion_status(results: Dict[str, Dict], store, pipeline_name: str, run_id: Optional[str]) -> Optional[str]:
    """Why ImageExampleGen ran or was reused: the input fingerprint against the previous run's."""
    example_gen = results.get(contract.IMAGE_EXAMPLE_GEN)
    if example_gen is None:
        return None
    if example_gen["state"] == "CACHED":
        return "reused from the cache: the input files are unchanged since they were ingested"
    if store is None or run_id is None:
        return "ran"
    fingerprint = example_gen.get("properties", {}).get(contract.INPUT_FINGERPRINT_PROPERTY)
    previous = previous_property(store, pipeline_name, contract.IMAGE_EXAMPLE_GEN,
                                 contract.INPUT_FINGERPRINT_PROPERTY, run_id)
    if previous is None:
        return "ran: first ingestion into this output folder"
    if previous != fingerprint:
        return "ran: the input files changed since the previous ingestion (files added, removed or modified)"
    return "ran: the input files are unchanged, the data settings changed"


def training_timings(results: Dict[str, Dict], data: Dict[str, Any]) -> Dict[str, Any]:
    """Per Trainer (Pretrainer, CandidateTrainer, BaselineTrainer): its state in this run, its Model artifact
    and the training seconds its history.json records (measured when it ran, also when reused)."""
    timings = {}
    for role in contract.ROLES:
        component = contract.TRAINER_OF_ROLE[role]
        model = single_output(results, component, "model")
        if model is None:
            continue
        recorded = data["timings"].get(role) or {}
        timings[role] = {"state": results[component]["state"], "model": model.uri,
                         "seconds": round(sum(recorded.values()), 1) if recorded else None, **recorded}
    return timings


def data_summary(data: Dict[str, Any], ingestion: Optional[str]) -> Optional[Dict[str, Any]]:
    """summary.json's `data`: the ingest report's counts and input, and why ingestion ran; None without it."""
    ingest = data["data"]
    if ingest is None:
        return None
    return {
        "class_names": data["class_names"],
        "splits": ingest["splits"],
        "eval_per_class": ingest["eval_per_class"],
        "skipped": ingest["skipped"],
        "eval_duplicates": ingest["eval_duplicates"],
        "ignored_non_image_files": ingest["ignored_non_image_files"] or [],
        "links_not_followed": ingest["links_not_followed"] or [],
        "input": dict(ingest["input"] or {}, ingestion=ingestion),
        "ingest_report": os.path.join(data["sources"]["ingest_report_uri"], contract.INGEST_REPORT_FILE),
    }


def build_summary(config: Config, results: Dict[str, Dict], failure: Optional[str], run_id: Optional[str] = None,
                  store=None) -> Dict[str, Any]:
    """The summary of run `run_id` (see README: summary.json); `store` (MLMD) tells why ingestion ran."""
    data = run_data(results)
    decision = data["decision"]
    summary: Dict[str, Any] = {
        "status": "failed" if failure else "succeeded",
        "error": failure,
        "run_id": run_id,
        "pipeline_name": config.pipeline.name,
        "method": config.training.method,
        "rule": {"min_accuracy": config.evaluation.min_accuracy, "margin": config.evaluation.margin,
                 "compare_to_pushed": config.evaluation.compare_to_pushed},
        "config": config.to_dict(),  # the effective config of this run, every default filled in (= OUT/config.yaml)
        "candidate": {"accuracy": None},
        "baseline": {"accuracy": None},
        "blessed": False,
        "pushed_model": None,
        "production": None,
        "data": data_summary(data, ingestion_status(results, store, config.pipeline.name, run_id)),
        "components": {component: result["state"] for component, result in results.items()},
        # Wall-clock seconds of each component in this run, from MLMD (a CACHED one: the cache lookup).
        "component_seconds": {component: result.get("seconds") for component, result in results.items()},
        "versions": data["versions"],
    }
    if data["sources"]["evaluation_uri"] is not None:
        summary["evaluation"] = data["sources"]["evaluation_uri"]
    for role in (contract.CANDIDATE_ROLE, contract.BASELINE_ROLE):
        if data["models"] is not None:
            summary[role]["accuracy"] = data["models"][role]["metrics"].get(contract.ACCURACY_METRIC)
    summary["production"] = decision["production"] if decision else None
    summary["labels_per_class"] = config.training.labels_per_class
    summary["labeled_train_images"] = data["labeled_train_images"]
    summary["timings"] = training_timings(results, data)
    summary["significance"] = decision["significance"] if decision else None
    # With compare_to_pushed or require_significant the Pusher's blessing is BlessingGate's, else the Evaluator's.
    summary["blessed"] = bool(decision and decision["blessed"])
    destination = data["sources"]["pushed_to"]
    pushed_in_this_run = results.get(contract.PUSHER, {}).get("state") != "CACHED"
    summary["pushed_model"] = destination if pushed_in_this_run else None
    summary["pushed_earlier"] = None if pushed_in_this_run else destination
    if failure:
        summary["decision"] = f"The run failed before a decision: {failure}"
    elif decision is None:
        summary["decision"] = "No evaluation result was found."
    else:  # the report's sentence; where the Pusher was reused it pushed nothing in this run
        summary["decision"] = decision_text(decision, summary["pushed_model"])
    if summary["pushed_earlier"]:
        summary["decision"] += (" Nothing was pushed in this run (the Pusher was reused from the cache); the model "
                                f"pushed earlier is {destination}.")
    report = single_output(results, contract.EVALUATION_REPORT_GEN, "report")
    report_path = os.path.join(report.uri, contract.REPORT_FILE) if report is not None else None
    summary["report"] = report_path if report_path and tf.io.gfile.exists(report_path) else None
    return summary


# The fields of summary.json that hold a path (a tuple is a path through nested mappings; "*" any key).
PATH_FIELDS = (("pushed_model",), ("pushed_earlier",), ("production", "production_model"), ("data", "ingest_report"),
               ("evaluation",), ("report",), ("timings", "*", "model"))


def relative_path(path: Optional[str], summary_dir: str, output_dir: str) -> Optional[str]:
    """`path` relative to `summary_dir` (the folder of summary.json) when it lies inside `output_dir` (the
    run's --output); a path outside it, a URI (gs://...) or None stays as it is."""
    if not path or "://" in path:
        return path
    absolute, output_dir = os.path.abspath(path), os.path.abspath(output_dir)
    if os.path.commonpath([absolute, output_dir]) != output_dir:
        return path
    return os.path.relpath(absolute, os.path.abspath(summary_dir))


def resolve_path(path: Optional[str], summary_dir: str) -> Optional[str]:
    """A path read from summary.json as an absolute path (or URI): relative ones are relative to the folder
    summary.json is in. Absolute paths, as older summaries wrote them, are returned as they are."""
    if not path or "://" in path:
        return path
    return os.path.join(os.path.abspath(summary_dir), path)


def _map_path_fields(node: Any, field: tuple, change) -> None:
    if not isinstance(node, dict) or not field:
        return
    keys = list(node) if field[0] == "*" else [field[0]] if field[0] in node else []
    for key in keys:
        if len(field) > 1:
            _map_path_fields(node[key], field[1:], change)
        elif isinstance(node[key], str):
            node[key] = change(node[key])


def with_relative_paths(summary: Dict[str, Any], summary_dir: str, output_dir: str) -> Dict[str, Any]:
    """A copy of `summary` whose PATH_FIELDS are relative to `summary_dir` when inside `output_dir`.

    `config` (the effective config, as OUT/config.yaml holds it) and `decision` (the sentence printed at the
    end) keep their paths as they are."""
    relative = copy.deepcopy(summary)
    for field in PATH_FIELDS:
        _map_path_fields(relative, field, lambda path: relative_path(path, summary_dir, output_dir))
    return relative


def publish_report(summary: Dict[str, Any], output_dir: str) -> None:
    """Copies the run's report.html to OUTPUT/report.html and links that copy from the summary."""
    if not summary.get("report"):
        return
    published = os.path.join(output_dir, contract.REPORT_FILE)
    tf.io.gfile.copy(summary["report"], published, overwrite=True)
    summary["report"] = published


def write_summary(summary: Dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
