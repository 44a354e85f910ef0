"""summary.json: what a run decided and why, read from the run's artifacts (MLMD + TFMA output)."""

import copy
import json
import os
from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_model_analysis as tfma

from components.evaluation_report.decision import decision_sentence, production_comparison
from components.evaluation_report.executor import REPORT_FILE
from components.evaluation_report.report_data import package_versions
from components.image_example_gen.fingerprint import FINGERPRINT_PROPERTY
from components.image_example_gen.ingest import REPORT_FILE as INGEST_REPORT_FILE
from components.paired_comparison.comparison import significance_summary
from components.production_model.executor import PATH_PROPERTY, PUSHED, SOURCE_PROPERTY
from pipeline.config import Config
from pipeline.evaluation import ACCURACY_METRIC, BASELINE, CANDIDATE, PRODUCTION
from pipeline.results.run_results import previous_property

SUMMARY_FILE = "summary.json"
REPORT_COMPONENT = "EvaluationReportGen"
HISTORY_FILE = "history.json"
INGEST_COMPONENT = "ImageExampleGen"


def overall_metrics(evaluation_uri: str) -> Dict[str, Dict[str, float]]:
    """{model name: {metric name: value}} for the overall slice of a TFMA evaluation (no diffs)."""
    metrics: Dict[str, Dict[str, float]] = {}
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue
        for entry in slice_metrics.metric_keys_and_values:
            if entry.key.is_diff:
                continue
            value = entry.value
            if value.HasField("double_value"):
                metrics.setdefault(entry.key.model_name, {})[entry.key.name] = value.double_value.value
    return metrics


def single_output(results: Dict[str, Dict], component: str, key: str):
    """The MLMD artifact of a component's output in the run, or None."""
    artifacts = results.get(component, {}).get("outputs", {}).get(key, [])
    return artifacts[0] if artifacts else None


def _custom(artifact, name: str):
    if artifact is None or name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    return value.int_value if value.HasField("int_value") else value.string_value


def pushed_destination(results: Dict[str, Dict]) -> Optional[str]:
    """Where the run's Pusher copied the model, or None when it pushed nothing."""
    pushed = single_output(results, "Pusher", "pushed_model")
    return _custom(pushed, "pushed_destination") if _custom(pushed, "pushed") else None


def production_summary(results: Dict[str, Dict]) -> Optional[Dict[str, Any]]:
    """The comparison with the model in production (evaluation.compare_to_pushed), or None without one."""
    evaluation = single_output(results, "ProductionEvaluator", "evaluation")
    if evaluation is None:
        return None
    metrics = overall_metrics(evaluation.uri)
    candidate, production = (metrics.get(name, {}).get(ACCURACY_METRIC) for name in (CANDIDATE, PRODUCTION))
    if candidate is None or production is None:
        return None
    model = single_output(results, "ProductionModel", "model")
    pushed = _custom(model, SOURCE_PROPERTY) == PUSHED
    return dict(
        production_comparison(candidate_accuracy=candidate, production_accuracy=production,
                              production_model=_custom(model, PATH_PROPERTY) if pushed else None),
        passed=bool(_custom(single_output(results, "ProductionEvaluator", "blessing"), "blessed")),
    )


def ingestion_status(results: Dict[str, Dict], store, pipeline_name: str, run_id: Optional[str]) -> Optional[str]:
    """Why ImageExampleGen ran or was reused: the input fingerprint against the previous run's."""
    example_gen = results.get(INGEST_COMPONENT)
    if example_gen is None:
        return None
    if example_gen["state"] == "CACHED":
        return "reused from the cache: the input files are unchanged since they were ingested"
    if store is None or run_id is None:
        return "ran"
    fingerprint = example_gen.get("properties", {}).get(FINGERPRINT_PROPERTY)
    previous = previous_property(store, pipeline_name, INGEST_COMPONENT, FINGERPRINT_PROPERTY, run_id)
    if previous is None:
        return "ran: first ingestion into this output folder"
    if previous != fingerprint:
        return "ran: the input files changed since the previous ingestion (files added, removed or modified)"
    return "ran: the input files are unchanged, the data settings changed"


def training_timings(results: Dict[str, Dict]) -> Dict[str, Any]:
    """Per Trainer (Pretrainer, CandidateTrainer, BaselineTrainer): its state in this run, its Model artifact
    and the training seconds its history.json records (measured when it ran, also when reused)."""
    timings = {}
    for role, component in (("pretrainer", "Pretrainer"), ("candidate", "CandidateTrainer"),
                            ("baseline", "BaselineTrainer")):
        model = single_output(results, component, "model")
        if model is None:
            continue
        path = os.path.join(model.uri, HISTORY_FILE)
        recorded = {}
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as handle:
                recorded = json.load(handle).get("timings", {})
        timings[role] = {"state": results[component]["state"], "model": model.uri,
                         "seconds": round(sum(recorded.values()), 1) if recorded else None, **recorded}
    return timings


def labeled_train_images(results: Dict[str, Dict]) -> Optional[int]:
    """How many labeled train images the classifiers trained on (after the label budget)."""
    model = single_output(results, "CandidateTrainer", "model")
    path = os.path.join(model.uri, HISTORY_FILE) if model is not None else None
    if path is None or not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle).get("labeled_train_images")


def build_summary(config: Config, results: Dict[str, Dict], failure: Optional[str], run_id: Optional[str] = None,
                  store=None) -> Dict[str, Any]:
    """The summary of run `run_id` (see README: summary.json); `store` (MLMD) tells why ingestion ran."""
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
        "data": None,
        "components": {component: result["state"] for component, result in results.items()},
        # Wall-clock seconds of each component in this run, from MLMD (a CACHED one: the cache lookup).
        "component_seconds": {component: result.get("seconds") for component, result in results.items()},
        "versions": package_versions(),
    }
    ingest_report = single_output(results, INGEST_COMPONENT, "report")
    ingest_report_path = os.path.join(ingest_report.uri, INGEST_REPORT_FILE) if ingest_report else None
    if ingest_report_path and tf.io.gfile.exists(ingest_report_path):
        with tf.io.gfile.GFile(ingest_report_path) as handle:
            ingest = json.load(handle)
        summary["data"] = {
            "class_names": ingest["class_names"],
            "splits": ingest["splits"],
            "eval_per_class": ingest.get("eval_per_class"),
            "skipped": ingest["skipped"],
            "eval_duplicates": ingest.get("eval_duplicates"),
            "ignored_non_image_files": ingest.get("ignored_non_image_files", []),
            "links_not_followed": ingest.get("links_not_followed", []),
            "input": dict(ingest.get("input") or {},
                          ingestion=ingestion_status(results, store, config.pipeline.name, run_id)),
            "ingest_report": ingest_report_path,
        }
    evaluation = single_output(results, "Evaluator", "evaluation")
    if evaluation is not None:
        metrics = overall_metrics(evaluation.uri)
        for name in (CANDIDATE, BASELINE):
            summary[name]["accuracy"] = metrics.get(name, {}).get(ACCURACY_METRIC)
        summary["evaluation"] = evaluation.uri
    summary["production"] = production_summary(results)
    summary["labels_per_class"] = config.training.labels_per_class
    summary["labeled_train_images"] = labeled_train_images(results)
    summary["timings"] = training_timings(results)
    comparison = single_output(results, "PairedComparison", "comparison")
    summary["significance"] = significance_summary(comparison.uri if comparison is not None else None)
    # With compare_to_pushed the Pusher's blessing is BlessingGate's (both comparisons), else the Evaluator's.
    blessing = single_output(results, "BlessingGate", "blessing") or single_output(results, "Evaluator", "blessing")
    summary["blessed"] = bool(_custom(blessing, "blessed"))
    destination = pushed_destination(results)
    pushed_in_this_run = results.get("Pusher", {}).get("state") != "CACHED"
    summary["pushed_model"] = destination if pushed_in_this_run else None
    summary["pushed_earlier"] = None if pushed_in_this_run else destination
    summary["decision"] = explain(summary)
    if summary["pushed_earlier"]:
        summary["decision"] += (" Nothing was pushed in this run (the Pusher was reused from the cache); the model "
                                f"pushed earlier is {destination}.")
    report = single_output(results, REPORT_COMPONENT, "report")
    report_path = os.path.join(report.uri, REPORT_FILE) if report is not None else None
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


def explain(summary: Dict[str, Any]) -> str:
    """One sentence: what was decided and why."""
    if summary["status"] == "failed":
        return f"The run failed before a decision: {summary['error']}"
    candidate, baseline = summary["candidate"]["accuracy"], summary["baseline"]["accuracy"]
    rule = summary["rule"]
    if candidate is None or baseline is None:
        return "No evaluation result was found."
    return decision_sentence(
        method=summary["method"], candidate_accuracy=candidate, baseline_accuracy=baseline,
        min_accuracy=rule["min_accuracy"], margin=rule["margin"], blessed=summary["blessed"],
        pushed_to=summary["pushed_model"], production=summary["production"],
        significance=summary.get("significance"),
    )


def publish_report(summary: Dict[str, Any], output_dir: str) -> None:
    """Copies the run's report.html to OUTPUT/report.html and links that copy from the summary."""
    if not summary.get("report"):
        return
    published = os.path.join(output_dir, REPORT_FILE)
    tf.io.gfile.copy(summary["report"], published, overwrite=True)
    summary["report"] = published


def write_summary(summary: Dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
