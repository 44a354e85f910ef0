"""The TFMA evaluation config built from the `evaluation:` section, and the blessing rule.

The candidate is blessed when its accuracy on the eval split is at least
`evaluation.min_accuracy` and exceeds the supervised baseline's by more than
`evaluation.margin` (strictly: a tie does not bless).
"""

import tensorflow_model_analysis as tfma

from pipeline.config import EvaluationConfig

CANDIDATE, BASELINE = "candidate", "baseline"
ACCURACY_METRIC = "sparse_categorical_accuracy"
LABEL_KEY, PREDICTION_KEY = "label", "probabilities"
# TFMA passes when (candidate - baseline) >= the absolute change threshold; adding a value far
# below one example's share of any eval set makes "exceeds the margin" strict.
_STRICTLY_MORE = 1e-9


def is_blessed(candidate_accuracy: float, baseline_accuracy: float, evaluation: EvaluationConfig) -> bool:
    """The blessing rule that build_eval_config encodes for TFMA, as a plain function."""
    return (
        candidate_accuracy >= evaluation.min_accuracy
        and candidate_accuracy - baseline_accuracy >= evaluation.margin + _STRICTLY_MORE
    )


def build_eval_config(evaluation: EvaluationConfig) -> tfma.EvalConfig:
    """Candidate vs baseline on the eval split: accuracy floor and change threshold."""
    model_specs = [
        tfma.ModelSpec(name=name, signature_name="serving_default", label_key=LABEL_KEY,
                       prediction_key=PREDICTION_KEY, is_baseline=(name == BASELINE))
        for name in (CANDIDATE, BASELINE)
    ]
    accuracy = tfma.MetricConfig(
        class_name="SparseCategoricalAccuracy",
        threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": evaluation.min_accuracy}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": evaluation.margin + _STRICTLY_MORE},
            ),
        ),
    )
    eval_config = tfma.EvalConfig(
        model_specs=model_specs,
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[accuracy])],
    )
    require_thresholds(eval_config)
    return eval_config


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
