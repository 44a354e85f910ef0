"""The result model of a run: everything the report shows and summary.json projects, as one JSON-ready dict
(written as report_data.json beside report.html).

Inputs are folders, so this runs the same inside the component and on an existing run (pipeline/results):
the Evaluator's TFMA output and blessing, the Trainers' model folders (history.json), ImageExampleGen's
ingest report and, when given, its examples (both models then predict eval images for the misclassified
grid), ProductionEvaluator's TFMA output and PairedComparison's comparison.json. The decision (its numbers,
its rule and its sentence) is derived here once, from TFMA's thresholds; summary.json takes it from here.
"""

import base64
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf
from tfx.components.evaluator import constants as evaluator_constants
from tfx.utils import path_utils

from components.evaluation_report import eval_images
from components.evaluation_report.decision import decision_sentence, production_comparison
from components.evaluation_report.tfma_output import (
    CHANGE,
    VALUE,
    CalibrationBucket,
    Evaluation,
    ModelResults,
    describe_threshold,
    read_evaluation,
)
from components.model_comparison import significance_summary
from trainer import contract, versions

# The ingest report's fields the report shows; those added later are None in an older run's report.
INGEST_FIELDS = ("source", "location", "splits", "skipped", "input", "eval_per_class", "eval_duplicates",
                 "ignored_non_image_files", "links_not_followed")
# ReportInputs fields the report cannot do without (summary.json of a run that stopped early has fewer).
PER_CLASS_SOURCE = "TFMA confusion matrix counts"
REQUIRED_INPUTS = ("evaluation_uri", "blessing_uri", "candidate_model_uri", "baseline_model_uri", "ingest_report_uri")


@dataclasses.dataclass(frozen=True)
class ReportInputs:
    """Where the report's inputs are; None: the run has no such output (the report needs REQUIRED_INPUTS).

    Attributes:
      evaluation_uri: the Evaluator's ModelEvaluation folder (TFMA output).
      blessing_uri: the ModelBlessing folder the Pusher used (holds a BLESSED or NOT_BLESSED file): the
        Evaluator's, or BlessingGate's with evaluation.compare_to_pushed or require_significant.
      candidate_model_uri: the candidate Trainer's Model folder (holds history.json).
      baseline_model_uri: the baseline Trainer's Model folder (holds history.json).
      ingest_report_uri: ImageExampleGen's IngestReport folder (holds ingest_report.json).
      pushed_to: where the Pusher copied the candidate; None when nothing was pushed.
      production_evaluation_uri: ProductionEvaluator's ModelEvaluation folder (candidate vs the model in
        production), with evaluation.compare_to_pushed; None otherwise.
      production_model: the pushed model that was in production; None when nothing was pushed before
        (the candidate was compared with the supervised baseline again) or without the comparison.
      comparison_uri: PairedComparison's ModelComparison folder (holds comparison.json); None without it.
      pretrained_model_uri: the Pretrainer's Model folder (its history.json has the pretraining curves,
        shown with the candidate's); None without it.
      examples_uri: ImageExampleGen's Examples folder (train labels per class, misclassified eval images);
        None without it.
    """

    evaluation_uri: Optional[str] = None
    blessing_uri: Optional[str] = None
    candidate_model_uri: Optional[str] = None
    baseline_model_uri: Optional[str] = None
    ingest_report_uri: Optional[str] = None
    pushed_to: Optional[str] = None
    production_evaluation_uri: Optional[str] = None
    production_model: Optional[str] = None
    comparison_uri: Optional[str] = None
    pretrained_model_uri: Optional[str] = None
    examples_uri: Optional[str] = None


def collect_report_data(inputs: ReportInputs) -> Dict[str, Any]:
    """The result model for the report: collect_run_data with every input the report needs.

    Raises:
      ValueError: an input the report needs is None, or as collect_run_data.
    """
    missing = [field for field in REQUIRED_INPUTS if getattr(inputs, field) is None]
    if missing:
        raise ValueError(f"the report needs {', '.join(missing)}")
    return collect_run_data(inputs)


def collect_run_data(inputs: ReportInputs, strict: bool = True) -> Dict[str, Any]:
    """The decision, both models' metrics, the training histories, timings and settings, the data counts, the
    misclassified eval images (with `examples_uri`) and the versions of the software that collects them.

    A part whose input is None is None (no evaluation: no decision, thresholds, failures or models; no ingest
    report: no class names or data); `strict=False` treats a missing file the same way (summary.json of a run
    that stopped early), else it raises.

    Raises:
      ValueError: an input file is missing (strict), or the evaluation is not one the report can explain
        (not one candidate and one baseline, thresholds on more than one metric, class ids outside the
        class list, no ingest report or Trainer history beside it).
    """
    ingest = _read_json(inputs.ingest_report_uri, contract.INGEST_REPORT_FILE, strict)
    records = {role: _read_json(uri, contract.HISTORY_FILE, strict) for role, uri in (
        (contract.PRETRAINER_ROLE, inputs.pretrained_model_uri), (contract.CANDIDATE_ROLE, inputs.candidate_model_uri),
        (contract.BASELINE_ROLE, inputs.baseline_model_uri))}
    pretraining = records[contract.PRETRAINER_ROLE]
    histories = {role: records[role] for role in (contract.CANDIDATE_ROLE, contract.BASELINE_ROLE) if records[role]}
    if pretraining and contract.CANDIDATE_ROLE in histories:  # the candidate's pretraining ran in the Pretrainer
        candidate = histories[contract.CANDIDATE_ROLE]
        histories[contract.CANDIDATE_ROLE] = dict(candidate, **{contract.HISTORY_CURVES_KEY: dict(
            pretraining[contract.HISTORY_CURVES_KEY], **candidate[contract.HISTORY_CURVES_KEY])})
    class_names = ingest["class_names"] if ingest else None
    data: Dict[str, Any] = {"decision": None, "thresholds": None, "failures": None, "class_names": class_names,
                            "models": None}
    if inputs.evaluation_uri is not None:
        data.update(_evaluation_data(inputs, histories, class_names))
    data.update({
        "histories": {role: record[contract.HISTORY_CURVES_KEY] for role, record in histories.items()},
        "settings": {role: (record or {}).get(contract.HISTORY_SETTINGS_KEY) for role, record in records.items()},
        "timings": {role: record.get(contract.HISTORY_TIMINGS_KEY) for role, record in records.items() if record},
        "labeled_train_images": (records[contract.CANDIDATE_ROLE] or {}).get(contract.HISTORY_LABELED_TRAIN_IMAGES_KEY),
        "augmented_views": _augmented_views(inputs.pretrained_model_uri, pretraining),
        "data": {key: ingest.get(key) for key in INGEST_FIELDS} if ingest else None,
        "examples": _examples_data(inputs, class_names),
        "versions": versions.package_versions(),
        "sources": dataclasses.asdict(inputs),
    })
    return data


def _evaluation_data(inputs: ReportInputs, histories: Dict[str, Dict[str, Any]],
                     class_names: Optional[List[str]]) -> Dict[str, Any]:
    """The decision, the thresholds and failures and both models' metrics, from TFMA's output."""
    if class_names is None or set(histories) != {contract.CANDIDATE_ROLE, contract.BASELINE_ROLE}:
        raise ValueError("the evaluation cannot be explained without the ingest report and both Trainers' history")
    evaluation = read_evaluation(inputs.evaluation_uri)
    blessed = inputs.blessing_uri is not None and tf.io.gfile.exists(
        os.path.join(inputs.blessing_uri, evaluator_constants.BLESSED_FILE_NAME))
    return {
        "decision": _decision(evaluation, histories[contract.CANDIDATE_ROLE]["method"], blessed, inputs.pushed_to,
                              _production(inputs), significance_summary(inputs.comparison_uri)),
        "thresholds": [
            {"metric": threshold.metric, "kind": threshold.kind, "required": describe_threshold(threshold.threshold),
             "passed": threshold.passed}
            for threshold in evaluation.thresholds
        ],
        "failures": evaluation.failures,
        "models": {
            role: _model_data(name, evaluation.models[name], class_names)
            for role, name in ((contract.CANDIDATE_ROLE, evaluation.candidate),
                               (contract.BASELINE_ROLE, evaluation.baseline))
        },
    }


def _examples_data(inputs: ReportInputs, class_names: List[str]) -> Optional[Dict[str, Any]]:
    """Train images per class and both models' misclassified eval images; None without the examples."""
    if inputs.examples_uri is None:
        return None
    train_files = eval_images.split_files(inputs.examples_uri, contract.TRAIN_SPLIT)
    eval_files = eval_images.split_files(inputs.examples_uri, contract.EVAL_SPLIT)
    if not eval_files:
        raise ValueError(f"the examples at {inputs.examples_uri} have no eval split files")
    model_dirs = {role: path_utils.serving_model_path(uri)
                  for role, uri in ((contract.CANDIDATE_ROLE, inputs.candidate_model_uri),
                                    (contract.BASELINE_ROLE, inputs.baseline_model_uri))}
    return {
        "train_per_class": eval_images.images_per_class(train_files, class_names) if train_files else None,
        "misclassified": dict(eval_images.misclassified_images(eval_files, model_dirs, class_names),
                              limit=eval_images.EXAMINED_EXAMPLES, shown=eval_images.SHOWN_PER_MODEL),
    }


def _augmented_views(pretrained_model_uri: Optional[str], pretraining: Optional[Dict[str, Any]]
                     ) -> Optional[Dict[str, Any]]:
    """The Pretrainer's augmented_views.png as base64 PNG, with the `pretrain_augment` overrides it was made
    with (None when not recorded); None when there is no such file."""
    if not pretrained_model_uri:
        return None
    path = os.path.join(pretrained_model_uri, contract.AUGMENTED_VIEWS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as handle:
        png = base64.b64encode(handle.read()).decode("ascii")
    settings = (pretraining or {}).get(contract.HISTORY_SETTINGS_KEY) or {}
    return {"png": png, "pretrain_augment": settings.get("pretrain_augment")}


def _read_json(folder: Optional[str], name: str, strict: bool) -> Any:
    """The JSON file `name` in `folder`; None without the folder, or without the file when not strict."""
    if folder is None:
        return None
    path = os.path.join(folder, name)
    if not tf.io.gfile.exists(path):
        if not strict:
            return None
        raise ValueError(f"the report needs {path}, which does not exist")
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def _production(inputs: ReportInputs) -> Optional[Dict[str, Any]]:
    """The comparison with the model in production, from ProductionEvaluator's TFMA output; None without it."""
    if inputs.production_evaluation_uri is None:
        return None
    evaluation = read_evaluation(inputs.production_evaluation_uri)
    metric = _thresholded_metric(evaluation)
    return dict(
        production_comparison(
            candidate_accuracy=evaluation.models[evaluation.candidate].metrics[metric],
            production_accuracy=evaluation.models[evaluation.baseline].metrics[metric],
            production_model=inputs.production_model,
        ),
        passed=evaluation.validation_ok,
    )


def _thresholded_metric(evaluation: Evaluation) -> str:
    metrics = sorted({threshold.metric for threshold in evaluation.thresholds})
    if len(metrics) != 1:
        raise ValueError(f"the report explains a decision on one thresholded metric; the evaluation has {metrics}")
    return metrics[0]


def _decision(evaluation: Evaluation, method: str, blessed: bool, pushed_to: Optional[str],
              production: Optional[Dict[str, Any]], significance: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The thresholded metric of both models, its thresholds, the uncertainty of the difference and the
    decision sentence."""
    metric = _thresholded_metric(evaluation)
    candidate = evaluation.models[evaluation.candidate]
    decision = {
        "metric": metric,
        "blessed": blessed,
        "validation_ok": evaluation.validation_ok,
        "pushed_to": pushed_to,
        "method": method,
        "candidate": candidate.metrics[metric],
        "baseline": evaluation.models[evaluation.baseline].metrics[metric],
        "difference": candidate.differences[metric],
        "min_value": _bound(evaluation, VALUE, "lower_bound"),
        "margin": _bound(evaluation, CHANGE, "absolute"),
        "production": production,
        "significance": significance,
    }
    decision["text"] = decision_text(decision, pushed_to)
    return decision


def decision_text(decision: Dict[str, Any], pushed_to: Optional[str]) -> str:
    """The decision's sentence (decision.decision_sentence) from its numbers, its rule and `pushed_to`: the
    report's says where the model went; summary.json's says nothing was pushed when the Pusher was cached."""
    return decision_sentence(
        method=decision["method"], candidate_accuracy=decision["candidate"], baseline_accuracy=decision["baseline"],
        min_accuracy=decision["min_value"], margin=decision["margin"], blessed=decision["blessed"],
        pushed_to=pushed_to, production=decision["production"], significance=decision["significance"],
    )


def _bound(evaluation: Evaluation, kind: str, field: str) -> float:
    for threshold in evaluation.thresholds:
        if threshold.kind == kind and threshold.threshold.HasField(field):
            return getattr(threshold.threshold, field).value
    raise ValueError(f"the evaluation has no {kind} threshold with a {field}: the decision cannot be explained")


def _model_data(name: str, results: ModelResults, class_names: List[str]) -> Dict[str, Any]:
    """A model's metrics; confusion matrix and per-class metrics are None when TFMA computed no matrix."""
    matrix = confusion_matrix(results, class_names) if results.confusion_counts else None
    return {
        "name": name,
        "metrics": results.metrics,
        "expected_calibration_error": expected_calibration_error(results.calibration_buckets),
        "confusion_matrix": matrix,
        **per_class_metrics(matrix, class_names),
    }


def confusion_matrix(results: ModelResults, class_names: List[str]) -> List[List[float]]:
    """rows = actual class, columns = predicted class, from TFMA's multi-class confusion matrix plot."""
    size = len(class_names)
    matrix = [[0.0] * size for _ in range(size)]
    for (actual, predicted), count in results.confusion_counts.items():
        if not (0 <= actual < size and 0 <= predicted < size):
            raise ValueError(
                f"TFMA's confusion matrix has class ids ({actual}, {predicted}) outside the {size} classes "
                f"{class_names} of the ingest report"
            )
        matrix[actual][predicted] = count
    return matrix


def per_class_metrics(matrix: Optional[List[List[float]]], class_names: List[str]) -> Dict[str, Any]:
    """Precision, recall and support per class, read off TFMA's confusion matrix counts (the pipeline's
    EvalConfig computes the matrix, not per-class metrics): precision = diagonal / column sum, recall =
    diagonal / row sum, support = row sum. A value is None when undefined (no example predicted as, or
    labelled as, that class); everything is None when TFMA computed no matrix.
    """
    if matrix is None:
        return {"per_class": None, "per_class_source": None}
    rows = []
    for class_id, class_name in enumerate(class_names):
        support = sum(matrix[class_id])
        predicted = sum(row[class_id] for row in matrix)
        rows.append({"class_name": class_name, "precision": _ratio(matrix[class_id][class_id], predicted),
                     "recall": _ratio(matrix[class_id][class_id], support), "support": support})
    return {"per_class": rows, "per_class_source": PER_CLASS_SOURCE}


def _ratio(numerator: float, denominator: float) -> Optional[float]:
    return numerator / denominator if denominator > 0 else None


def expected_calibration_error(buckets: List[CalibrationBucket]) -> Optional[float]:
    """ECE of the top-1 confidence: sum over buckets of |correct - confidence sums| / examples.

    The buckets are TFMA's calibration plot with k=1 binarization: per confidence bucket, the
    number of examples, how many of them were classified correctly and the sum of their top-1
    probabilities. None when there is no calibration plot or no example.
    """
    examples = sum(bucket.examples for bucket in buckets)
    if examples == 0:
        return None
    return sum(abs(bucket.labels - bucket.predictions) for bucket in buckets) / examples
