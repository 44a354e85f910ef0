"""The evaluation report: its numbers are TFMA's, from a tiny real evaluation run by TFX's Evaluator.

Two tiny classifiers (mean colour -> class) are exported with the trainer's own export, evaluated
on 24 real PNG tf.Examples by the TFX Evaluator executor with the pipeline's EvalConfig, and the
report is built from that output, the blessing and hand-written histories and ingest report.
"""

import base64
import dataclasses
import io
import json
import os
import re
import xml.etree.ElementTree as ElementTree
from typing import Dict, List

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from PIL import Image
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components.artifacts import EvaluationReport, IngestReport, ModelComparison
from components.evaluation_report import executor as report_executor
from components.evaluation_report.html_report import render_html
from components.evaluation_report.report_data import (
    HISTORY_FILE,
    ReportInputs,
    collect_report_data,
    per_class_metrics,
)
from components.evaluation_report.tfma_output import read_evaluation
from components.image_example_gen.ingest import REPORT_FILE, build_report, make_example
from components.paired_comparison import executor as comparison_executor
from components.paired_comparison.comparison import significance_summary
from pipeline import summary as summary_lib
from pipeline.config import Config, EvaluationConfig
from pipeline.evaluation import ACCURACY_METRIC, build_eval_config
from pipeline.report import render_report_for_run, report_inputs
from trainer.export import SERVING_IMAGES_SIGNATURE, export_classifier

CLASS_NAMES = ["red", "green", "blue", "gray"]
COLOR_CENTERS = np.array([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9], [0.5, 0.5, 0.5]])
IMAGE_SIZE = 4
EXAMPLES_PER_CLASS = 6
RULE = EvaluationConfig(min_accuracy=0.5, margin=0.1)
PUSHED_TO = "/serving/selfsup/1700000000"
# Mean colour (3) -> class logits (4). The candidate separates gray from the primaries well; the
# baseline's extra weight from red to gray makes it call every red image gray.
MODEL_WEIGHTS = {
    "candidate": ([[1, 0, 0, 0.5], [0, 1, 0, 0.5], [0, 0, 1, 0.5]], 6.0),
    "baseline": ([[1, 0, 0, 1.2], [0, 1, 0, 0], [0, 0, 1, 0]], 3.0),
}
HISTORIES = {
    "candidate": {
        "pretrain/loss": [4.8, 4.2, 3.9, 3.7], "pretrain/knn_accuracy": [0.55, 0.7],
        "pretrain/contrastive_accuracy": [0.1, 0.3, 0.45, 0.5],
        "linear/accuracy": [0.6, 0.7], "linear/val_accuracy": [0.55, 0.65], "linear/loss": [1.2, 0.9],
        "linear/val_loss": [1.3, 1.0], "finetune/accuracy": [0.8], "finetune/val_accuracy": [0.75],
        "finetune/loss": [0.6], "finetune/val_loss": [0.7],
    },
    "baseline": {
        "supervised/accuracy": [0.4, 0.5, 0.6], "supervised/val_accuracy": [0.4, 0.45, 0.5],
        "supervised/loss": [1.4, 1.2, 1.1], "supervised/val_loss": [1.4, 1.3, 1.2],
    },
}
SKIPPED = [{"id": "unlabeled/empty.png", "split": "unlabeled", "reason": "empty file"}]


@dataclasses.dataclass
class TinyRun:
    """A real evaluation's folders, the pipeline's run results for them, and the eval split."""

    inputs: ReportInputs
    report_uri: str
    results: Dict[str, Dict]
    images: List[bytes]
    labels: List[int]
    examples_uri: str


def _png(rng: np.random.Generator, color: np.ndarray) -> bytes:
    pixels = np.clip(color + rng.normal(0, 0.02, (IMAGE_SIZE, IMAGE_SIZE, 3)), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray((pixels * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _eval_split(rng: np.random.Generator):
    labels = [class_id for _ in range(EXAMPLES_PER_CLASS) for class_id in range(len(CLASS_NAMES))]
    images = [_png(rng, COLOR_CENTERS[label] + rng.uniform(-0.35, 0.35, 3)) for label in labels]
    return images, labels


def _examples_artifact(folder: str, images: List[bytes], labels: List[int]) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = folder
    examples.split_names = artifact_utils.encode_split_names(["eval"])
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, "tfrecords_gzip")
    os.makedirs(os.path.join(folder, "Split-eval"))
    with tf.io.TFRecordWriter(os.path.join(folder, "Split-eval", "data_tfrecord-00000.gz"), "GZIP") as writer:
        for index, (image, label) in enumerate(zip(images, labels)):
            writer.write(make_example(image, label, f"test/{CLASS_NAMES[label]}/{index}.png"))
    return examples


def _model_artifact(folder: str, role: str, model_id: int) -> standard_artifacts.Model:
    """Exports the role's tiny classifier as the Trainer would, with a history.json beside it."""
    weights, scale = MODEL_WEIGHTS[role]
    classifier = keras.Sequential([
        keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(CLASS_NAMES), activation="softmax"),
    ])
    classifier.layers[-1].set_weights([np.array(weights, np.float32) * scale, np.zeros(len(CLASS_NAMES), np.float32)])
    model = standard_artifacts.Model()
    model.uri = folder
    model.id = model_id
    export_classifier(classifier, CLASS_NAMES, IMAGE_SIZE, os.path.join(folder, "Format-Serving"))
    with open(os.path.join(folder, HISTORY_FILE), "w") as handle:
        json.dump({"role": role, "method": "simclr", "class_names": CLASS_NAMES, "history": HISTORIES[role]}, handle)
    return model


def _output_artifact(artifact_type, folder: str):
    artifact = artifact_type()
    artifact.uri = folder
    os.makedirs(folder)
    return artifact


def _mlmd_artifact(uri: str, **custom_properties) -> metadata_store_pb2.Artifact:
    artifact = metadata_store_pb2.Artifact(uri=uri)
    for name, value in custom_properties.items():
        if isinstance(value, int):
            artifact.custom_properties[name].int_value = value
        else:
            artifact.custom_properties[name].string_value = value
    return artifact


def make_tiny_run(root: str) -> TinyRun:
    """Runs the TFX Evaluator, then the report component, on the tiny models; see the module docstring."""
    images, labels = _eval_split(np.random.default_rng(0))
    examples = _examples_artifact(os.path.join(root, "examples"), images, labels)
    models = {role: _model_artifact(os.path.join(root, role), role, index)
              for index, role in enumerate(MODEL_WEIGHTS, start=1)}
    ingest = _output_artifact(IngestReport, os.path.join(root, "ingest"))
    counts = [{"split": "unlabeled", "label": -1, "count": 40}, {"split": "train", "label": 0, "count": 20}] + [
        {"split": "eval", "label": label, "count": int(np.sum(labels == label))} for label in sorted(set(labels))]
    with open(os.path.join(ingest.uri, REPORT_FILE), "w") as handle:
        json.dump(build_report({"source": "folder", "path": "/data/colours"}, CLASS_NAMES, counts, SKIPPED, []),
                  handle)
    evaluation = _output_artifact(standard_artifacts.ModelEvaluation, os.path.join(root, "evaluation"))
    blessing = _output_artifact(standard_artifacts.ModelBlessing, os.path.join(root, "blessing"))
    evaluator_executor.Executor().Do(
        {"examples": [examples], "model": [models["candidate"]], "baseline_model": [models["baseline"]]},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {"eval_config": proto_utils.proto_to_json(build_eval_config(RULE, num_classes=len(CLASS_NAMES))),
         "example_splits": json.dumps(["eval"])},
    )
    pushed_model = _output_artifact(standard_artifacts.PushedModel, os.path.join(root, "pushed_model"))
    pushed_model.set_int_custom_property("pushed", 1)
    pushed_model.set_string_custom_property("pushed_destination", PUSHED_TO)
    report = _output_artifact(EvaluationReport, os.path.join(root, "report"))
    report_executor.Executor().Do(
        {"evaluation": [evaluation], "blessing": [blessing], "candidate_model": [models["candidate"]],
         "baseline_model": [models["baseline"]], "ingest_report": [ingest], "pushed_model": [pushed_model]},
        {"report": [report]}, {},
    )
    results = {
        "ImageExampleGen": {"state": "COMPLETE", "outputs": {"report": [_mlmd_artifact(ingest.uri)]}},
        "CandidateTrainer": {"state": "COMPLETE", "outputs": {"model": [_mlmd_artifact(models["candidate"].uri)]}},
        "BaselineTrainer": {"state": "COMPLETE", "outputs": {"model": [_mlmd_artifact(models["baseline"].uri)]}},
        "Evaluator": {"state": "COMPLETE", "outputs": {
            "evaluation": [_mlmd_artifact(evaluation.uri)],
            "blessing": [_mlmd_artifact(blessing.uri, blessed=blessing.get_int_custom_property("blessed"))],
        }},
        "Pusher": {"state": "COMPLETE", "outputs": {
            "pushed_model": [_mlmd_artifact(pushed_model.uri, pushed=1, pushed_destination=PUSHED_TO)]}},
        summary_lib.REPORT_COMPONENT: {"state": "COMPLETE", "outputs": {"report": [_mlmd_artifact(report.uri)]}},
    }
    inputs = ReportInputs(evaluation_uri=evaluation.uri, blessing_uri=blessing.uri,
                          candidate_model_uri=models["candidate"].uri, baseline_model_uri=models["baseline"].uri,
                          ingest_report_uri=ingest.uri, pushed_to=PUSHED_TO)
    return TinyRun(inputs=inputs, report_uri=report.uri, results=results, images=images, labels=labels,
                   examples_uri=examples.uri)


def make_comparison(run: TinyRun, folder: str, significance_level: float = 0.05, require_significant: bool = False,
                    swap: bool = False):
    """Runs the real PairedComparison executor on the tiny run's eval split and models (swapped: baseline first)."""
    examples = standard_artifacts.Examples()
    examples.uri = run.examples_uri
    examples.split_names = artifact_utils.encode_split_names(["eval"])
    models = []
    for model_id, uri in enumerate((run.inputs.candidate_model_uri, run.inputs.baseline_model_uri), start=1):
        model = standard_artifacts.Model()
        model.uri, model.id = uri, model_id
        models.append(model)
    candidate, baseline = models[::-1] if swap else models
    comparison = _output_artifact(ModelComparison, folder)
    comparison_executor.Executor().Do(
        {"examples": [examples], "model": [candidate], "baseline_model": [baseline]}, {"comparison": [comparison]},
        {"significance_level": significance_level, "require_significant": int(require_significant),
         "bootstrap_resamples": 2000, "seed": 0},
    )
    return comparison


def write_run_summary(run: TinyRun, output_dir: str) -> dict:
    """summary.json for the tiny run as the local runner writes it, with report.html published beside it."""
    config = Config(evaluation=RULE)
    summary = summary_lib.build_summary(config, run.results, None)
    summary_lib.publish_report(summary, output_dir)
    summary_lib.write_summary(summary, os.path.join(output_dir, "summary.json"))
    return summary


_TINY_RUN_CACHE: Dict[str, TinyRun] = {}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """One tiny run per session, also for the browser test (which imports this fixture)."""
    if "run" not in _TINY_RUN_CACHE:
        _TINY_RUN_CACHE["run"] = make_tiny_run(str(tmp_path_factory.mktemp("tiny-run")))
    return _TINY_RUN_CACHE["run"]


@pytest.fixture(scope="module")
def report_data(tiny_run) -> dict:
    return collect_report_data(tiny_run.inputs)


def _tfma_overall_values(evaluation_uri: str) -> Dict[tuple, float]:
    """{(model, metric name, class id or None, is_diff): value} straight from TFMA's metrics file."""
    values = {}
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        for entry in slice_metrics.metric_keys_and_values:
            class_id = entry.key.sub_key.class_id.value if entry.key.sub_key.HasField("class_id") else None
            values[(entry.key.model_name, entry.key.name, class_id, entry.key.is_diff)] = entry.value.double_value.value
    return values


def _predictions(model_uri: str, images: List[bytes]) -> np.ndarray:
    """(N, C) probabilities from the exported SavedModel's image signature."""
    serving = tf.saved_model.load(os.path.join(model_uri, "Format-Serving")).signatures[SERVING_IMAGES_SIGNATURE]
    return serving(images=tf.constant(images))["probabilities"].numpy()


def _expected_calibration_error(probabilities: np.ndarray, labels: List[int]) -> float:
    """The textbook ECE over 10 equal-width confidence bins (1.0 in a bin of its own, as TFMA does)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.array(labels)
    bins = np.floor(confidence * 10).astype(int)
    gaps = [abs(correct[bins == index].sum() - confidence[bins == index].sum()) for index in np.unique(bins)]
    return float(sum(gaps) / len(labels))


def test_report_accuracies_and_decision_are_tfmas(tiny_run, report_data):
    tfma_values = _tfma_overall_values(tiny_run.inputs.evaluation_uri)
    decision = report_data["decision"]
    assert decision["candidate"] == tfma_values[("candidate", ACCURACY_METRIC, None, False)]
    assert decision["baseline"] == tfma_values[("baseline", ACCURACY_METRIC, None, False)]
    assert decision["difference"] == tfma_values[("candidate", ACCURACY_METRIC, None, True)]
    assert decision["candidate"] > decision["baseline"] + RULE.margin  # the fixture's models differ as intended
    assert decision["blessed"] and decision["validation_ok"]
    assert decision["text"].startswith(f"BLESSED and pushed to {PUSHED_TO}: candidate (simclr) accuracy ")
    assert [(row["metric"], row["kind"], row["passed"]) for row in report_data["thresholds"]] == [
        (ACCURACY_METRIC, "value", True), (ACCURACY_METRIC, "change", True)]
    for role in ("candidate", "baseline"):
        metrics = report_data["models"][role]["metrics"]
        assert metrics["top_3_accuracy"] == tfma_values[(role, "top_3_accuracy", None, False)]
        assert metrics["example_count"] == len(tiny_run.labels)


def test_per_class_metrics_and_confusion_matrices_are_tfmas(tiny_run, report_data):
    tfma_values = _tfma_overall_values(tiny_run.inputs.evaluation_uri)
    labels = np.array(tiny_run.labels)
    model_uris = {"candidate": tiny_run.inputs.candidate_model_uri, "baseline": tiny_run.inputs.baseline_model_uri}
    for role, model_uri in model_uris.items():
        model = report_data["models"][role]
        assert model["per_class_source"] == "TFMA precision and recall metrics"
        for class_id, row in enumerate(model["per_class"]):
            for metric in ("precision", "recall"):
                value = tfma_values[(role, metric, class_id, False)]
                assert row[metric] == (None if np.isnan(value) else value)
        predicted = _predictions(model_uri, tiny_run.images).argmax(axis=1)
        expected_matrix = [[float(np.sum((labels == actual) & (predicted == guess))) for guess in range(4)]
                           for actual in range(4)]
        assert model["confusion_matrix"] == expected_matrix
    assert report_data["models"]["baseline"]["per_class"][0]["precision"] is None  # never predicts red
    assert report_data["models"]["baseline"]["per_class"][0]["recall"] == 0.0


def test_per_class_metrics_read_off_the_confusion_matrix_equal_tfmas_own(tiny_run, report_data):
    evaluation = read_evaluation(tiny_run.inputs.evaluation_uri)
    for role in ("candidate", "baseline"):
        results = dataclasses.replace(evaluation.models[role], per_class={})
        derived = per_class_metrics(results, report_data["models"][role]["confusion_matrix"], CLASS_NAMES)
        assert derived["per_class_source"] == "TFMA confusion matrix counts"
        for derived_row, tfma_row in zip(derived["per_class"], report_data["models"][role]["per_class"]):
            for metric in ("precision", "recall", "support"):
                assert derived_row[metric] == pytest.approx(tfma_row[metric], abs=1e-12)


def test_expected_calibration_error_matches_the_predictions(tiny_run, report_data):
    model_uris = {"candidate": tiny_run.inputs.candidate_model_uri, "baseline": tiny_run.inputs.baseline_model_uri}
    for role, model_uri in model_uris.items():
        expected = _expected_calibration_error(_predictions(model_uri, tiny_run.images), tiny_run.labels)
        assert report_data["models"][role]["expected_calibration_error"] == pytest.approx(expected, rel=1e-5)


def test_report_data_carries_histories_and_ingest_counts(report_data):
    assert report_data["histories"] == HISTORIES
    assert report_data["data"]["splits"]["unlabeled"] == {"read": 41, "written": 40, "skipped": 1,
                                                          "duplicates_of_eval": 0}
    assert report_data["data"]["skipped"] == SKIPPED
    assert report_data["class_names"] == CLASS_NAMES


def _images(page: str) -> List[str]:
    return re.findall(r'<img alt="[^"]*" src="([^"]+)"', page)


def test_html_report_is_self_contained_and_shows_the_numbers(report_data):
    page = render_html(report_data)
    decision = report_data["decision"]
    assert f'<p id="decision">{decision["text"]}</p>' in page
    assert f'data-value="{decision["candidate"]!r}">{decision["candidate"]:.4f}<' in page
    assert f'data-value="{decision["baseline"]!r}">{decision["baseline"]:.4f}<' in page
    images = _images(page)
    assert len(images) == 5  # loss, kNN accuracy, collapse signal; fine-tuning accuracy and loss
    for source in images:
        prefix = "data:image/svg+xml;base64,"
        assert source.startswith(prefix)
        svg = ElementTree.fromstring(base64.b64decode(source[len(prefix):]))
        assert float(svg.get("width")) > 0 and float(svg.get("height")) > 0
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<script" not in page
    assert "unlabeled/empty.png" in page and "empty file" in page


def test_executor_writes_report_and_data_into_the_artifact(tiny_run, report_data):
    with open(os.path.join(tiny_run.report_uri, report_executor.REPORT_DATA_FILE)) as handle:
        written = json.load(handle)
    assert written == json.loads(json.dumps(report_data))
    with open(os.path.join(tiny_run.report_uri, report_executor.REPORT_FILE)) as handle:
        assert handle.read() == render_html(written)


def test_summary_links_the_published_report_and_carries_the_same_decision(tiny_run, report_data, tmp_path):
    summary = write_run_summary(tiny_run, str(tmp_path))
    assert summary["report"] == str(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text() == render_html(report_data)
    assert summary["decision"] == report_data["decision"]["text"]
    assert summary["pipeline_name"] == Config().pipeline.name
    assert (summary["candidate"]["accuracy"], summary["baseline"]["accuracy"]) == (
        report_data["decision"]["candidate"], report_data["decision"]["baseline"])


def test_report_inputs_come_from_the_runs_outputs(tiny_run):
    assert report_inputs(tiny_run.results) == tiny_run.inputs
    without_evaluator = {name: result for name, result in tiny_run.results.items() if name != "Evaluator"}
    with pytest.raises(ValueError, match="no Evaluator output 'evaluation'"):
        report_inputs(without_evaluator)


def test_render_report_for_run_needs_a_run_folder(tmp_path):
    with pytest.raises(ValueError, match="has no metadata.sqlite"):
        render_report_for_run(str(tmp_path))


def test_eval_config_adds_report_metrics_and_per_class_metrics_only_with_a_class_count():
    without_classes = build_eval_config(RULE)
    with_classes = build_eval_config(RULE, num_classes=3)
    assert len(with_classes.metrics_specs) == len(without_classes.metrics_specs) + 1
    per_class = with_classes.metrics_specs[-1]
    assert list(per_class.binarize.class_ids.values) == [0, 1, 2]
    names = {metric.class_name for spec in without_classes.metrics_specs for metric in spec.metrics}
    assert {"SparseCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "MultiClassConfusionMatrixPlot",
            "CalibrationPlot", "ExampleCount"} <= names
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        build_eval_config(RULE, num_classes=1)


def test_report_and_summary_show_the_uncertainty_of_the_difference(tiny_run, tmp_path):
    comparison = make_comparison(tiny_run, str(tmp_path / "comparison"), require_significant=True)
    significance = significance_summary(comparison.uri)
    data = collect_report_data(dataclasses.replace(tiny_run.inputs, comparison_uri=comparison.uri))
    decision = data["decision"]
    assert decision["significance"] == significance
    # 24 eval images: the candidate is right on 6 the baseline misses, the baseline on 1 the candidate misses.
    assert significance["eval_images"] == len(tiny_run.labels)
    assert significance["difference"] == pytest.approx(decision["difference"])  # TFMA's difference, recomputed
    assert significance["p_value"] == pytest.approx(0.125) and not significance["significant"]
    assert significance["ci_low"] <= significance["difference"] <= significance["ci_high"]
    interval = f"95% interval of the difference [{significance['ci_low']:+.4f}, {significance['ci_high']:+.4f}]"
    assert interval in decision["text"]
    assert "McNemar p = 0.1250 on 24 eval images: not significant at 0.05" in decision["text"]
    assert "and a McNemar p-value below 0.05)" in decision["text"]  # require_significant is part of the rule
    page = render_html(data)
    assert f'id="difference-interval" data-low="{significance["ci_low"]!r}"' in page
    assert f'id="p-value" class="failed" data-value="{significance["p_value"]!r}">p = 0.1250 (not significant)' in page
    results = dict(tiny_run.results, PairedComparison={
        "state": "COMPLETE", "outputs": {"comparison": [_mlmd_artifact(comparison.uri)]}})
    summary = summary_lib.build_summary(Config(evaluation=RULE), results, None)
    assert summary["significance"] == significance
    assert set(significance) >= {"candidate_accuracy", "baseline_accuracy", "difference", "ci_low", "ci_high",
                                 "confidence", "p_value", "significant", "eval_images"}
    assert summary["decision"] == decision["text"]


def test_without_a_comparison_the_report_and_summary_say_nothing_about_it(tiny_run, report_data, tmp_path):
    assert report_data["decision"]["significance"] is None
    assert "McNemar" not in report_data["decision"]["text"] and 'id="p-value"' not in render_html(report_data)
    assert summary_lib.build_summary(Config(evaluation=RULE), tiny_run.results, None)["significance"] is None
