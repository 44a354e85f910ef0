"""The TFMA evaluation config built from the `evaluation:` section, and the blessing rule.

The candidate is blessed when its accuracy on the eval split is at least
`evaluation.min_accuracy` and exceeds the supervised baseline's by more than
`evaluation.margin` (strictly: a tie does not bless).

With `evaluation.compare_to_pushed`, a second Evaluator compares the candidate with the model in
production (build_production_eval_config): the candidate must be strictly more accurate.

Both models also get, for the report: the example count, top-k accuracy, the multi-class
confusion matrix (from whose counts the report reads per-class precision and recall) and a calibration
plot of the top-1 confidence (from which the report reads the expected calibration error).
"""

import json

import tensorflow_model_analysis as tfma

from pipeline.config import EvaluationConfig
from trainer import contract

# The TFMA model names: the two Trainers' roles, and the model in production (build_production_eval_config).
CANDIDATE, BASELINE, PRODUCTION = contract.CANDIDATE_ROLE, contract.BASELINE_ROLE, "production"
TOP_K = 3
CALIBRATION_BUCKETS = 10
# TFMA passes when (candidate - baseline) >= the absolute change threshold; adding a value far
# below one example's share of any eval set makes "exceeds the margin" strict.
_STRICTLY_MORE = 1e-9


def is_blessed(candidate_accuracy: float, baseline_accuracy: float, evaluation: EvaluationConfig) -> bool:
    """The blessing rule that build_eval_config encodes for TFMA, as a plain function."""
    return (
        candidate_accuracy >= evaluation.min_accuracy
        and candidate_accuracy - baseline_accuracy >= evaluation.margin + _STRICTLY_MORE
    )


def build_eval_config(evaluation: EvaluationConfig, label_key: str = contract.LABEL_FEATURE) -> tfma.EvalConfig:
    """Candidate vs baseline on the eval split: accuracy floor and change threshold, plus report metrics.

    Args:
      evaluation: the `evaluation:` config section (the blessing rule).
      label_key: the examples' label feature (`training.label_feature`; ImageExampleGen's `label`).

    Returns:
      The TFMA EvalConfig for the Evaluator.

    Raises:
      ValueError: the config has no threshold.
    """
    accuracy = _accuracy_metric(evaluation.min_accuracy, evaluation.margin)
    report_metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(class_name="SparseTopKCategoricalAccuracy",
                          config=json.dumps({"k": TOP_K, "name": f"top_{TOP_K}_accuracy"})),
        tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
    ]
    # k=1 binarization keeps each example's largest probability, labelled 1 when it is the true class:
    # the calibration plot of the top-1 confidence that expected calibration error is defined on.
    calibration_plot = tfma.MetricConfig(class_name="CalibrationPlot",
                                         config=json.dumps({"num_buckets": CALIBRATION_BUCKETS}))
    top_1_confidence = tfma.BinarizationOptions(k_list={"values": [1]})
    metrics_specs = [
        tfma.MetricsSpec(metrics=[accuracy, *report_metrics]),
        tfma.MetricsSpec(metrics=[calibration_plot], binarize=top_1_confidence),
    ]
    eval_config = tfma.EvalConfig(model_specs=_model_specs(BASELINE, label_key), slicing_specs=[tfma.SlicingSpec()],
                                  metrics_specs=metrics_specs)
    require_thresholds(eval_config)
    return eval_config


def build_production_eval_config() -> tfma.EvalConfig:
    """Candidate vs the model in production: blessed only when strictly more accurate (a tie keeps production)."""
    metrics = [_accuracy_metric(0.0, 0.0), tfma.MetricConfig(class_name="ExampleCount")]
    return tfma.EvalConfig(model_specs=_model_specs(PRODUCTION), slicing_specs=[tfma.SlicingSpec()],
                           metrics_specs=[tfma.MetricsSpec(metrics=metrics)])


def _model_specs(baseline_name: str, label_key: str = contract.LABEL_FEATURE):
    return [
        tfma.ModelSpec(name=name, signature_name=contract.SERVING_SIGNATURE, label_key=label_key,
                       prediction_key=contract.PROBABILITIES_OUTPUT, is_baseline=(name == baseline_name))
        for name in (CANDIDATE, baseline_name)
    ]


def _accuracy_metric(min_accuracy: float, margin: float) -> tfma.MetricConfig:
    """Accuracy with the blessing rule: at least `min_accuracy`, more than `margin` over the baseline."""
    return tfma.MetricConfig(
        class_name="SparseCategoricalAccuracy",
        threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": margin + _STRICTLY_MORE},
            ),
        ),
    )


def require_thresholds(eval_config: tfma.EvalConfig) -> None:
    """Rejects an EvalConfig without any threshold: TFMA would then never bless, silently."""
    has_threshold = any(
        metric.HasField("threshold") for spec in eval_config.metrics_specs for metric in spec.metrics
    ) or any(spec.thresholds for spec in eval_config.metrics_specs)
    if not has_threshold:
        raise ValueError(
            "the evaluation config has no metric threshold: the Evaluator would never bless a model and "
            "nothing would be pushed. Set evaluation.min_accuracy / evaluation.margin."
        )
