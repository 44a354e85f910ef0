"""The anomaly gate and the blessing rule (the pipeline's two stop signs)."""

import os

import pytest
import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from tensorflow_metadata.proto.v0 import schema_pb2

from components.anomaly_gate.gate import ANOMALIES_FILE, raise_on_anomalies, read_anomalies
from pipeline.config import EvaluationConfig
from pipeline.evaluation import build_eval_config, is_blessed, require_thresholds


def write_real_anomalies(uri, split, with_anomaly: bool):
    """Runs TFDV's own validation on real statistics and writes its Anomalies as ExampleValidator does."""
    import pandas as pd

    frame = pd.DataFrame({"label": [0, 1, 2] if not with_anomaly else [0, 1, 5]})
    statistics = tfdv.generate_statistics_from_dataframe(frame)
    schema = schema_pb2.Schema()
    feature = schema.feature.add(name="label", type=schema_pb2.INT)
    feature.int_domain.min, feature.int_domain.max = 0, 2
    anomalies = tfdv.validate_statistics(statistics, schema)
    os.makedirs(os.path.join(uri, f"Split-{split}"), exist_ok=True)
    with open(os.path.join(uri, f"Split-{split}", ANOMALIES_FILE), "wb") as handle:
        handle.write(anomalies.SerializeToString())


def test_gate_passes_clean_splits_and_stops_on_anomalies(tmp_path):
    write_real_anomalies(str(tmp_path), "train", with_anomaly=False)
    write_real_anomalies(str(tmp_path), "eval", with_anomaly=True)
    found = read_anomalies(str(tmp_path), ["train", "eval"])
    assert list(found) == ["eval"] and "label" in found["eval"][0]
    with pytest.raises(ValueError, match="anomalies, so training does not start: eval: feature 'label'"):
        raise_on_anomalies(found, str(tmp_path))
    raise_on_anomalies(read_anomalies(str(tmp_path), ["train"]), str(tmp_path))  # clean: no error


def test_gate_refuses_a_missing_anomalies_file(tmp_path):
    with pytest.raises(ValueError, match="anomalies file missing for split 'eval'"):
        read_anomalies(str(tmp_path), ["eval"])


@pytest.mark.parametrize(
    "candidate, baseline, min_accuracy, margin, blessed",
    [
        (0.80, 0.70, 0.0, 0.0, True),
        (0.70, 0.70, 0.0, 0.0, False),  # a tie does not beat the baseline
        (0.75, 0.70, 0.0, 0.05, False),  # must exceed the margin, not just reach it
        (0.76, 0.70, 0.0, 0.05, True),
        (0.80, 0.70, 0.85, 0.0, False),  # below the floor
        (0.65, 0.70, 0.0, -0.1, True),  # a negative margin tolerates a small loss
    ],
)
def test_blessing_rule(candidate, baseline, min_accuracy, margin, blessed):
    assert is_blessed(candidate, baseline, EvaluationConfig(min_accuracy=min_accuracy, margin=margin)) is blessed


def test_eval_config_carries_both_thresholds_and_both_models():
    eval_config = build_eval_config(EvaluationConfig(min_accuracy=0.4, margin=0.02))
    assert [(spec.name, spec.is_baseline) for spec in eval_config.model_specs] == [
        ("candidate", False), ("baseline", True)]
    metric = next(m for spec in eval_config.metrics_specs for m in spec.metrics
                  if m.class_name == "SparseCategoricalAccuracy")
    assert metric.threshold.value_threshold.lower_bound.value == pytest.approx(0.4)
    assert metric.threshold.change_threshold.absolute.value == pytest.approx(0.02)
    assert metric.threshold.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER


def test_eval_config_without_thresholds_is_rejected():
    eval_config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="label")],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="SparseCategoricalAccuracy")])],
    )
    with pytest.raises(ValueError, match="no metric threshold"):
        require_thresholds(eval_config)
