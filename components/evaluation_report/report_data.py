"""Collects everything the report shows, as one JSON-ready dict (written as report_data.json).

Inputs are folders, so this runs the same inside the component and on an existing run:
the Evaluator's TFMA output and blessing, the Trainers' model folders (history.json),
ImageExampleGen's ingest report and, when given, its examples (both models then predict eval images
for the misclassified grid), and PairedComparison's comparison.json.
"""

import base64
import dataclasses
import importlib.metadata
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
from components.image_example_gen.ingest import REPORT_FILE as INGEST_REPORT_FILE
from components.paired_comparison.comparison import significance_summary

# Written by each Trainer (trainer/run.py) beside Format-Serving, in the Model artifact folder.
HISTORY_FILE = "history.json"
# Written by the Pretrainer (trainer/encoder_artifact.py AUGMENTED_VIEWS_FILE) beside its history.json:
# rows of an image as decoded, its first and its second augmented view; absent in older runs and without pretraining.
AUGMENTED_VIEWS_FILE = "augmented_views.png"
# The key of a Trainer's settings in its history.json, when it records them.
TRAINER_SETTINGS_KEY = "config"
PER_CLASS_METRICS = ("precision", "recall")
# The distributions whose versions the report shows, as importlib.metadata names them.
VERSIONED_PACKAGES = ("selfsup", "tfx", "tensorflow", "keras", "tensorflow-model-analysis")
# The ingest report's fields the report shows; those added later are None in an older run's report.
INGEST_FIELDS = ("source", "location", "splits", "skipped", "input", "eval_per_class", "eval_duplicates",
                 "ignored_non_image_files", "links_not_followed")


@dataclasses.dataclass(frozen=True)
class ReportInputs:
    """Where the report's inputs are.

    Attributes:
      evaluation_uri: the Evaluator's ModelEvaluation folder (TFMA output).
      blessing_uri: the Evaluator's ModelBlessing folder (holds a BLESSED or NOT_BLESSED file).
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

    evaluation_uri: str
    blessing_uri: str
    candidate_model_uri: str
    baseline_model_uri: str
    ingest_report_uri: str
    pushed_to: Optional[str] = None
    production_evaluation_uri: Optional[str] = None
    production_model: Optional[str] = None
    comparison_uri: Optional[str] = None
    pretrained_model_uri: Optional[str] = None
    examples_uri: Optional[str] = None


def collect_report_data(inputs: ReportInputs) -> Dict[str, Any]:
    """The decision, both models' metrics, the training histories and settings, the data counts, the
    misclassified eval images (with `examples_uri`) and the versions of the software that collects them.

    Raises:
      ValueError: an input file is missing, or the evaluation is not one the report can explain
        (not one candidate and one baseline, thresholds on more than one metric, class ids
        outside the class list).
    """
    evaluation = read_evaluation(inputs.evaluation_uri)
    ingest = _read_json(os.path.join(inputs.ingest_report_uri, INGEST_REPORT_FILE))
    histories = {
        "candidate": _read_json(os.path.join(inputs.candidate_model_uri, HISTORY_FILE)),
        "baseline": _read_json(os.path.join(inputs.baseline_model_uri, HISTORY_FILE)),
    }
    pretraining = None
    if inputs.pretrained_model_uri:  # the candidate's pretraining happened in the Pretrainer step
        pretraining = _read_json(os.path.join(inputs.pretrained_model_uri, HISTORY_FILE))
        histories["candidate"] = dict(histories["candidate"],
                                      history=dict(pretraining["history"], **histories["candidate"]["history"]))
    records = {"pretrainer": pretraining, **histories}
    class_names = ingest["class_names"]
    blessed = tf.io.gfile.exists(os.path.join(inputs.blessing_uri, evaluator_constants.BLESSED_FILE_NAME))
    return {
        "decision": _decision(evaluation, histories["candidate"]["method"], blessed, inputs.pushed_to,
                              _production(inputs), significance_summary(inputs.comparison_uri)),
        "thresholds": [
            {"metric": threshold.metric, "kind": threshold.kind, "required": describe_threshold(threshold.threshold),
             "passed": threshold.passed}
            for threshold in evaluation.thresholds
        ],
        "failures": evaluation.failures,
        "class_names": class_names,
        "models": {
            "candidate": _model_data(evaluation.candidate, evaluation.models[evaluation.candidate], class_names),
            "baseline": _model_data(evaluation.baseline, evaluation.models[evaluation.baseline], class_names),
        },
        "histories": {role: history["history"] for role, history in histories.items()},
        "settings": {role: (record or {}).get(TRAINER_SETTINGS_KEY) for role, record in records.items()},
        "labeled_train_images": histories["candidate"].get("labeled_train_images"),
        "augmented_views": _augmented_views(inputs.pretrained_model_uri, pretraining),
        "data": {key: ingest.get(key) for key in INGEST_FIELDS},
        "examples": _examples_data(inputs, class_names),
        "versions": package_versions(),
        "sources": dataclasses.asdict(inputs),
    }


def package_versions() -> Dict[str, Optional[str]]:
    """The installed version of each of VERSIONED_PACKAGES (None when it is not installed)."""
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _examples_data(inputs: ReportInputs, class_names: List[str]) -> Optional[Dict[str, Any]]:
    """Train images per class and both models' misclassified eval images; None without the examples."""
    if inputs.examples_uri is None:
        return None
    train_files = eval_images.split_files(inputs.examples_uri, "train")
    eval_files = eval_images.split_files(inputs.examples_uri, "eval")
    if not eval_files:
        raise ValueError(f"the examples at {inputs.examples_uri} have no eval split files")
    model_dirs = {role: path_utils.serving_model_path(uri)
                  for role, uri in (("candidate", inputs.candidate_model_uri), ("baseline", inputs.baseline_model_uri))}
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
    path = os.path.join(pretrained_model_uri, AUGMENTED_VIEWS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as handle:
        png = base64.b64encode(handle.read()).decode("ascii")
    settings = (pretraining or {}).get(TRAINER_SETTINGS_KEY) or {}
    return {"png": png, "pretrain_augment": settings.get("pretrain_augment")}


def _read_json(path: str) -> Any:
    if not tf.io.gfile.exists(path):
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
    decision["text"] = decision_sentence(
        method=method, candidate_accuracy=decision["candidate"], baseline_accuracy=decision["baseline"],
        min_accuracy=decision["min_value"], margin=decision["margin"], blessed=blessed, pushed_to=pushed_to,
        production=production, significance=significance,
    )
    return decision


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
        **per_class_metrics(results, matrix, class_names),
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


def per_class_metrics(results: ModelResults, matrix: List[List[float]], class_names: List[str]) -> Dict[str, Any]:
    """Precision, recall and support per class, and where precision and recall come from.

    TFMA's per-class precision/recall metrics are used when the evaluation has them (the pipeline
    knew the number of classes); otherwise they are read off TFMA's confusion matrix counts, which
    is the same definition: precision = diagonal / column sum, recall = diagonal / row sum. A
    value is None when undefined (no example predicted as, or labelled as, that class).
    """
    if matrix is None:
        return {"per_class": None, "per_class_source": None}
    from_tfma = all(len(results.per_class.get(name, {})) == len(class_names) for name in PER_CLASS_METRICS)
    rows = []
    for class_id, class_name in enumerate(class_names):
        support = sum(matrix[class_id])
        if from_tfma:
            precision, recall = (results.per_class[name][class_id] for name in PER_CLASS_METRICS)
        else:
            predicted = sum(row[class_id] for row in matrix)
            precision = _ratio(matrix[class_id][class_id], predicted)
            recall = _ratio(matrix[class_id][class_id], support)
        rows.append({"class_name": class_name, "precision": precision, "recall": recall, "support": support})
    source = "TFMA precision and recall metrics" if from_tfma else "TFMA confusion matrix counts"
    return {"per_class": rows, "per_class_source": source}


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
