"""Reads what TFMA wrote for a candidate-vs-baseline evaluation: models, thresholds, validation, metrics, plots.

Only the overall slice is read. Every number here is TFMA's own; nothing is recomputed.
"""

import dataclasses
import math
from typing import Dict, List, Optional, Tuple, Union

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2
from tensorflow_model_analysis.writers import eval_config_writer

VALUE, CHANGE = "value", "change"


@dataclasses.dataclass(frozen=True)
class CalibrationBucket:
    """One bucket of TFMA's calibration histogram: weighted example, label and prediction sums."""

    examples: float
    labels: float
    predictions: float


@dataclasses.dataclass
class ModelResults:
    """One model's overall-slice results.

    Attributes:
      metrics: metric name -> value, for metrics without a sub key (metrics with one are not read).
      differences: metric name -> this model's value minus the baseline's (TFMA's diff metrics).
      confusion_counts: (actual class id, predicted class id) -> weighted examples, at threshold 0.
      calibration_buckets: the calibration plot of the top-1 confidence, lowest bucket first.
    """

    metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    differences: Dict[str, float] = dataclasses.field(default_factory=dict)
    confusion_counts: Dict[Tuple[int, int], float] = dataclasses.field(default_factory=dict)
    calibration_buckets: List[CalibrationBucket] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Threshold:
    """A threshold TFMA checked on the candidate: on its value, or on its change from the baseline."""

    metric: str
    kind: str  # VALUE or CHANGE
    threshold: Union[config_pb2.GenericValueThreshold, config_pb2.GenericChangeThreshold]
    passed: bool


@dataclasses.dataclass
class Evaluation:
    """A TFMA evaluation of a candidate against a baseline."""

    candidate: str
    baseline: str
    validation_ok: bool
    thresholds: List[Threshold]
    failures: List[str]
    models: Dict[str, ModelResults]


def read_evaluation(evaluation_uri: str) -> Evaluation:
    """Reads a TFMA output folder (the Evaluator's ModelEvaluation artifact).

    Raises:
      ValueError: the evaluation does not compare exactly one candidate with one baseline.
    """
    eval_config = eval_config_writer.load_eval_run(evaluation_uri)[0]
    candidate, baseline = _model_names(eval_config)
    validation = tfma.load_validation_result(evaluation_uri)
    failed = {_threshold_id(failure.metric_key) for slice_validation in validation.metric_validations_per_slice
              for failure in slice_validation.failures}
    models = {name: ModelResults() for name in (candidate, baseline)}
    _read_metrics(evaluation_uri, models)
    _read_plots(evaluation_uri, models)
    return Evaluation(
        candidate=candidate,
        baseline=baseline,
        validation_ok=validation.validation_ok,
        thresholds=_candidate_thresholds(eval_config, candidate, failed),
        failures=[_describe_failure(failure) for slice_validation in validation.metric_validations_per_slice
                  for failure in slice_validation.failures],
        models=models,
    )


def _model_names(eval_config: config_pb2.EvalConfig) -> Tuple[str, str]:
    candidates = [spec.name for spec in eval_config.model_specs if not spec.is_baseline]
    baselines = [spec.name for spec in eval_config.model_specs if spec.is_baseline]
    if len(candidates) != 1 or len(baselines) != 1:
        raise ValueError(
            f"the report compares one candidate with one baseline; the evaluation has candidates {candidates} "
            f"and baselines {baselines}"
        )
    return candidates[0], baselines[0]


def _threshold_id(metric_key) -> Tuple[str, str, str]:
    return metric_key.model_name, metric_key.name, CHANGE if metric_key.is_diff else VALUE


def _candidate_thresholds(eval_config: config_pb2.EvalConfig, candidate: str, failed) -> List[Threshold]:
    """The overall-slice thresholds on the candidate, as TFMA's validator derives them from the config."""
    thresholds = []
    configured = tfma.metrics.metric_thresholds_from_metrics_specs(eval_config.metrics_specs, eval_config)
    for key, slices_and_thresholds in configured.items():
        if key.model_name != candidate:
            continue
        kind = CHANGE if key.is_diff else VALUE
        for _, threshold in slices_and_thresholds:
            passed = (candidate, key.name, kind) not in failed
            thresholds.append(Threshold(metric=key.name, kind=kind, threshold=threshold, passed=passed))
    return thresholds


def _describe_failure(failure) -> str:
    key = failure.metric_key
    what = f"{key.name} of {key.model_name}" + (" minus the baseline's" if key.is_diff else "")
    threshold = failure.metric_threshold
    if threshold.HasField("change_threshold"):
        required = describe_threshold(threshold.change_threshold)
    else:
        required = describe_threshold(threshold.value_threshold)
    value = _double(failure.metric_value)
    return f"{what} is {'undefined' if value is None else f'{value:.4f}'}, required {required}"


def describe_threshold(threshold) -> str:
    """'>= 0.5', '<= 0.1', 'change >= +0.02 (absolute)' ...: a threshold proto in words."""
    parts = []
    if isinstance(threshold, config_pb2.GenericValueThreshold):
        if threshold.HasField("lower_bound"):
            parts.append(f">= {threshold.lower_bound.value:g}")
        if threshold.HasField("upper_bound"):
            parts.append(f"<= {threshold.upper_bound.value:g}")
        return " and ".join(parts)
    relation = "<=" if threshold.direction == config_pb2.MetricDirection.LOWER_IS_BETTER else ">="
    if threshold.HasField("absolute"):
        parts.append(f"{relation} {threshold.absolute.value:+g} (absolute)")
    if threshold.HasField("relative"):
        parts.append(f"{relation} {threshold.relative.value:+g} (relative)")
    return " and ".join(parts)


def _double(value: metrics_for_slice_pb2.MetricValue) -> Optional[float]:
    """A scalar metric value; None when TFMA has no value or an undefined one (0/0)."""
    if not value.HasField("double_value") or math.isnan(value.double_value.value):
        return None
    return value.double_value.value


def _overall(slices):
    """The entries of the overall slice (TFMA writes one record per slice)."""
    for slice_results in slices:
        if not slice_results.slice_key.single_slice_keys:
            return slice_results
    raise ValueError("the TFMA output has no overall slice")


def _read_metrics(evaluation_uri: str, models: Dict[str, ModelResults]) -> None:
    for entry in _overall(tfma.load_metrics(evaluation_uri)).metric_keys_and_values:
        key, value = entry.key, _double(entry.value)
        results = models.get(key.model_name)
        if results is None or not entry.value.HasField("double_value") or key.HasField("sub_key"):
            continue
        if key.is_diff:
            results.differences[key.name] = value
        else:
            results.metrics[key.name] = value


def _read_plots(evaluation_uri: str, models: Dict[str, ModelResults]) -> None:
    """Plots are told apart by their kind of value: TFMA drops the calibration plot's name from its key."""
    for entry in _overall(tfma.load_plots(evaluation_uri)).plot_keys_and_values:
        results = models.get(entry.key.model_name)
        if results is None:
            continue
        if entry.value.HasField("multi_class_confusion_matrix_at_thresholds"):
            matrix = _threshold_zero_matrix(entry.value.multi_class_confusion_matrix_at_thresholds)
            results.confusion_counts = {
                (cell.actual_class_id, cell.predicted_class_id): cell.num_weighted_examples for cell in matrix.entries
            }
        if entry.value.HasField("calibration_histogram_buckets"):
            results.calibration_buckets = [
                CalibrationBucket(examples=bucket.num_weighted_examples.value,
                                  labels=bucket.total_weighted_label.value,
                                  predictions=bucket.total_weighted_refined_prediction.value)
                for bucket in entry.value.calibration_histogram_buckets.buckets
            ]


def _threshold_zero_matrix(matrices):
    """The matrix at threshold 0: every example counted under its top predicted class."""
    for matrix in matrices.matrices:
        if matrix.threshold == 0.0:
            return matrix
    raise ValueError("TFMA's multi-class confusion matrix plot has no matrix at threshold 0")
