"""The evaluation report: its numbers are TFMA's, from a tiny real evaluation run by TFX's Evaluator.

Two tiny classifiers (mean colour -> class) are exported with the trainer's own export, evaluated
on 24 real PNG tf.Examples by the TFX Evaluator executor with the pipeline's EvalConfig, and the
report is built from that output, the blessing, the examples (both models predict the eval images
again for the misclassified grid), hand-written histories (a Pretrainer's and both Trainers') and an
ingest report built by ImageExampleGen's own build_report.
"""

import base64
import copy
import dataclasses
import importlib.metadata
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
from components.evaluation_report.curves import knn_check_epochs
from components.evaluation_report.html_report import render_html
from components.evaluation_report.report_data import ReportInputs, collect_report_data
from components.image_example_gen.ingest import build_report, make_example
from components.model_comparison import significance_summary
from components.paired_comparison import executor as comparison_executor
from pipeline.config import Config, EvaluationConfig
from pipeline.evaluation import build_eval_config
from pipeline.results import summary as summary_lib
from pipeline.results.report import render_report_for_run, report_inputs
from trainer import contract
from trainer.contract import ACCURACY_METRIC, AUGMENTED_VIEWS_FILE, HISTORY_FILE, HISTORY_SETTINGS_KEY
from trainer.export import SERVING_IMAGES_SIGNATURE, export_classifier
from trainer.versions import PACKAGES as VERSIONED_PACKAGES

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
# The Pretrainer's history (10 epochs, a kNN check every 4: epochs 4 and 8), then each Trainer's.
PRETRAINING_HISTORY = {
    "pretrain/loss": [4.8, 4.5, 4.2, 4.0, 3.9, 3.8, 3.75, 3.7, 3.68, 3.66], "pretrain/knn_accuracy": [0.55, 0.7],
    "pretrain/probe_accuracy": [0.25, 0.3, 0.38, 0.42, 0.5, 0.52, 0.55, 0.6, 0.61, 0.63],
    "pretrain/contrastive_accuracy": [0.1, 0.3, 0.45, 0.5, 0.52, 0.55, 0.57, 0.6, 0.61, 0.62],
}
TRAINER_HISTORIES = {
    "candidate": {  # linear head 2 epochs, whole network 1, distillation 2
        "linear/accuracy": [0.6, 0.7], "linear/val_accuracy": [0.55, 0.65], "linear/loss": [1.2, 0.9],
        "linear/val_loss": [1.3, 1.0], "finetune/accuracy": [0.8], "finetune/val_accuracy": [0.75],
        "finetune/loss": [0.6], "finetune/val_loss": [0.7],
        "distill/loss": [1.1, 0.8], "distill/distillation_loss": [0.7, 0.5], "distill/labeled_loss": [0.4, 0.3],
        "distill/accuracy": [0.82, 0.86], "distill/teacher_agreement": [0.7, 0.9], "distill/val_loss": [0.68, 0.65],
        "distill/val_accuracy": [0.76, 0.78],
    },
    "baseline": {
        "supervised/accuracy": [0.4, 0.5, 0.6], "supervised/val_accuracy": [0.4, 0.45, 0.5],
        "supervised/loss": [1.4, 1.2, 1.1], "supervised/val_loss": [1.4, 1.3, 1.2],
    },
}
HISTORIES = {"candidate": dict(PRETRAINING_HISTORY, **TRAINER_HISTORIES["candidate"]),
             "baseline": TRAINER_HISTORIES["baseline"]}
# As a Trainer records its settings in history.json (the baseline's records none here).
TRAINER_SETTINGS = {
    "pretrainer": {"method": "simclr", "pretrain_epochs": 10, "monitor_every_epochs": 4, "knn_k": 3},
    "candidate": {"method": "simclr", "linear_epochs": 2, "finetune_epochs": 1, "distill_epochs": 2,
                  "labels_per_class": 2, "pretrain_augment": {"crop_scale": [0.2, 1.0]}},
    "baseline": None,
}
# The Pretrainer's augmented views: 2 rows of 8-pixel images, each as decoded and its two views.
AUGMENTED_VIEWS_PNG = tf.io.encode_png(
    np.random.default_rng(1).integers(0, 256, size=(2 * 8, 3 * 8, 3), dtype=np.uint8)).numpy()
TRAIN_PER_CLASS = [3, 2, 2, 1]  # labeled train images of each class in the examples' train split
LABELED_TRAIN_IMAGES = 7  # what the Trainers used of them: at most 2 per class
SKIPPED = [{"id": "unlabeled/empty.png", "split": "unlabeled", "reason": "empty file"}]
EVAL_COPIES = [{"id": "unlabeled/copy-of-red.png", "split": "unlabeled", "duplicate_of": "test/red/0.png"}]
IGNORED = [f"unlabeled/notes-{index:02d}.txt" for index in range(23)] + ["labeled/red/photo.webp"]
LINKS_NOT_FOLLOWED = [{"path": "unlabeled/a/loop", "reason": "directory /data/colours/unlabeled was already read"},
                      {"path": "unlabeled/gone.png", "reason": "broken symbolic link to /elsewhere/gone.png"}]
INPUT_FINGERPRINT = {"fingerprint": "sha256:" + "0123456789abcdef" * 4, "files": 70, "bytes": 123456}


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


def _train_split(rng: np.random.Generator):
    labels = [class_id for class_id, count in enumerate(TRAIN_PER_CLASS) for _ in range(count)]
    return [_png(rng, COLOR_CENTERS[label]) for label in labels], labels


def _examples_artifact(folder: str, splits: Dict[str, tuple]) -> standard_artifacts.Examples:
    """ImageExampleGen's output layout: Split-<name>/ gzip TFRecords of (image, label, path) tf.Examples."""
    examples = standard_artifacts.Examples()
    examples.uri = folder
    examples.split_names = artifact_utils.encode_split_names(list(splits))
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, "tfrecords_gzip")
    for split, (images, labels) in splits.items():
        os.makedirs(os.path.join(folder, f"Split-{split}"))
        folder_name = "test" if split == "eval" else "labeled"
        with tf.io.TFRecordWriter(os.path.join(folder, f"Split-{split}", "data_tfrecord-00000.gz"), "GZIP") as writer:
            for index, (image, label) in enumerate(zip(images, labels)):
                writer.write(make_example(image, label, f"{folder_name}/{CLASS_NAMES[label]}/{index}.png"))
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
    _write_history(folder, role, TRAINER_HISTORIES[role], labeled_train_images=LABELED_TRAIN_IMAGES)
    return model


def _write_history(folder: str, role: str, history: Dict[str, List[float]], **fields) -> None:
    """history.json as a Trainer writes it, with its settings when TRAINER_SETTINGS has them."""
    os.makedirs(folder, exist_ok=True)
    record = dict({"role": role, "method": "simclr", "class_names": CLASS_NAMES, "history": history}, **fields)
    if TRAINER_SETTINGS[role] is not None:
        record[HISTORY_SETTINGS_KEY] = TRAINER_SETTINGS[role]
    with open(os.path.join(folder, HISTORY_FILE), "w") as handle:
        json.dump(record, handle)


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
    rng = np.random.default_rng(0)
    images, labels = _eval_split(rng)
    train_images, train_labels = _train_split(rng)
    examples = _examples_artifact(os.path.join(root, "examples"),
                                  {"train": (train_images, train_labels), "eval": (images, labels)})
    models = {role: _model_artifact(os.path.join(root, role), role, index)
              for index, role in enumerate(MODEL_WEIGHTS, start=1)}
    pretrainer = standard_artifacts.Model()
    pretrainer.uri = os.path.join(root, "pretrainer")
    _write_history(pretrainer.uri, "pretrainer", PRETRAINING_HISTORY, timings={"pretrain_seconds": 1.0})
    tf.io.write_file(os.path.join(pretrainer.uri, AUGMENTED_VIEWS_FILE), AUGMENTED_VIEWS_PNG)
    ingest = _output_artifact(IngestReport, os.path.join(root, "ingest"))
    counts = [{"split": "unlabeled", "label": -1, "count": 40}] + [
        {"split": split, "label": label, "count": int(np.sum(np.array(split_labels) == label))}
        for split, split_labels in (("train", train_labels), ("eval", labels)) for label in sorted(set(split_labels))]
    with open(os.path.join(ingest.uri, contract.INGEST_REPORT_FILE), "w") as handle:
        json.dump(build_report({"source": "folder", "path": "/data/colours"}, CLASS_NAMES, counts, SKIPPED, IGNORED,
                               duplicates=EVAL_COPIES, input_fingerprint=INPUT_FINGERPRINT,
                               links_not_followed=LINKS_NOT_FOLLOWED), handle)
    evaluation = _output_artifact(standard_artifacts.ModelEvaluation, os.path.join(root, "evaluation"))
    blessing = _output_artifact(standard_artifacts.ModelBlessing, os.path.join(root, "blessing"))
    evaluator_executor.Executor().Do(
        {"examples": [examples], "model": [models["candidate"]], "baseline_model": [models["baseline"]]},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {"eval_config": proto_utils.proto_to_json(build_eval_config(RULE)),
         "example_splits": json.dumps(["eval"])},
    )
    pushed_model = _output_artifact(standard_artifacts.PushedModel, os.path.join(root, "pushed_model"))
    pushed_model.set_int_custom_property("pushed", 1)
    pushed_model.set_string_custom_property("pushed_destination", PUSHED_TO)
    report = _output_artifact(EvaluationReport, os.path.join(root, "report"))
    report_executor.Executor().Do(
        {"evaluation": [evaluation], "blessing": [blessing], "candidate_model": [models["candidate"]],
         "baseline_model": [models["baseline"]], "ingest_report": [ingest], "pushed_model": [pushed_model],
         "pretrained_model": [pretrainer], "examples": [examples]},
        {"report": [report]}, {},
    )
    results = {
        "ImageExampleGen": {"state": "COMPLETE", "outputs": {"report": [_mlmd_artifact(ingest.uri)],
                                                             "examples": [_mlmd_artifact(examples.uri)]}},
        "Pretrainer": {"state": "COMPLETE", "outputs": {"model": [_mlmd_artifact(pretrainer.uri)]}},
        "CandidateTrainer": {"state": "COMPLETE", "outputs": {"model": [_mlmd_artifact(models["candidate"].uri)]}},
        "BaselineTrainer": {"state": "COMPLETE", "outputs": {"model": [_mlmd_artifact(models["baseline"].uri)]}},
        "Evaluator": {"state": "COMPLETE", "outputs": {
            "evaluation": [_mlmd_artifact(evaluation.uri)],
            "blessing": [_mlmd_artifact(blessing.uri, blessed=blessing.get_int_custom_property("blessed"))],
        }},
        "Pusher": {"state": "COMPLETE", "outputs": {
            "pushed_model": [_mlmd_artifact(pushed_model.uri, pushed=1, pushed_destination=PUSHED_TO)]}},
        contract.EVALUATION_REPORT_GEN: {"state": "COMPLETE", "outputs": {"report": [_mlmd_artifact(report.uri)]}},
    }
    inputs = ReportInputs(evaluation_uri=evaluation.uri, blessing_uri=blessing.uri,
                          candidate_model_uri=models["candidate"].uri, baseline_model_uri=models["baseline"].uri,
                          ingest_report_uri=ingest.uri, pushed_to=PUSHED_TO, pretrained_model_uri=pretrainer.uri,
                          examples_uri=examples.uri)
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


def test_confusion_matrices_are_tfmas_and_per_class_metrics_are_read_off_them(tiny_run, report_data):
    """The pipeline's EvalConfig has TFMA compute the confusion matrix (no per-class metrics): the report's
    precision, recall and support per class are the models' own on the eval images, read off its counts."""
    labels = np.array(tiny_run.labels)
    model_uris = {"candidate": tiny_run.inputs.candidate_model_uri, "baseline": tiny_run.inputs.baseline_model_uri}
    for role, model_uri in model_uris.items():
        model = report_data["models"][role]
        predicted = _predictions(model_uri, tiny_run.images).argmax(axis=1)
        expected_matrix = [[float(np.sum((labels == actual) & (predicted == guess))) for guess in range(4)]
                           for actual in range(4)]
        assert model["confusion_matrix"] == expected_matrix
        assert model["per_class_source"] == "TFMA confusion matrix counts"
        for class_id, row in enumerate(model["per_class"]):
            right = np.sum((labels == class_id) & (predicted == class_id))
            predicted_as = np.sum(predicted == class_id)
            assert row["support"] == np.sum(labels == class_id)
            assert row["recall"] == pytest.approx(right / np.sum(labels == class_id))
            assert row["precision"] == (None if predicted_as == 0 else pytest.approx(right / predicted_as))
    assert report_data["models"]["baseline"]["per_class"][0]["precision"] is None  # never predicts red
    assert report_data["models"]["baseline"]["per_class"][0]["recall"] == 0.0
    assert report_data["models"]["candidate"]["per_class"][0]["precision"] is not None


def test_expected_calibration_error_matches_the_predictions(tiny_run, report_data):
    model_uris = {"candidate": tiny_run.inputs.candidate_model_uri, "baseline": tiny_run.inputs.baseline_model_uri}
    for role, model_uri in model_uris.items():
        expected = _expected_calibration_error(_predictions(model_uri, tiny_run.images), tiny_run.labels)
        assert report_data["models"][role]["expected_calibration_error"] == pytest.approx(expected, rel=1e-5)


def test_report_data_carries_histories_and_ingest_counts(report_data):
    assert report_data["histories"] == HISTORIES  # the Pretrainer's curves merged into the candidate's
    assert report_data["data"]["splits"]["unlabeled"] == {"read": 42, "written": 40, "skipped": 1,
                                                          "duplicates_of_eval": 1}
    assert report_data["data"]["skipped"] == SKIPPED
    assert report_data["class_names"] == CLASS_NAMES
    assert report_data["settings"] == TRAINER_SETTINGS
    assert report_data["labeled_train_images"] == LABELED_TRAIN_IMAGES


CHART_PREFIX, THUMBNAIL_PREFIX = "data:image/svg+xml;base64,", "data:image/png;base64,"
SVG = "{http://www.w3.org/2000/svg}"
CHART_TITLES = ["Pretraining loss", "Encoder quality: kNN and online probe accuracy",
                "Collapse signal: contrastive accuracy", "Classifier training accuracy", "Classifier training loss",
                "Distillation loss", "Distillation: agreement with the teacher"]


def _images(page: str) -> List[tuple]:
    """(alt, src) of every <img>."""
    return re.findall(r'<img alt="([^"]*)" src="([^"]+)"', page)


def _chart(page: str, title: str) -> ElementTree.Element:
    (source,) = [src for alt, src in _images(page) if alt == title]
    assert source.startswith(CHART_PREFIX)
    return ElementTree.fromstring(base64.b64decode(source[len(CHART_PREFIX):]))


def _x_ticks(svg: ElementTree.Element) -> Dict[str, float]:
    """x axis tick label -> its x position (the plain centred numbers)."""
    return {text.text: float(text.get("x")) for text in svg.iter(f"{SVG}text")
            if set(text.keys()) == {"x", "y", "text-anchor"} and text.get("text-anchor") == "middle"
            and text.text.isdigit()}


def _polyline_xs(svg: ElementTree.Element, color: str, dashed: bool) -> List[float]:
    (line,) = [line for line in svg.iter(f"{SVG}polyline")
               if line.get("stroke") == color and (line.get("stroke-dasharray") is not None) == dashed]
    return [float(point.split(",")[0]) for point in line.get("points").split()]


def _at_ticks(ticks: Dict[str, float], epochs) -> List[float]:
    return [pytest.approx(ticks[str(epoch)], abs=0.06) for epoch in epochs]


def test_html_report_is_self_contained_and_shows_the_numbers(report_data):
    page = render_html(report_data)
    decision = report_data["decision"]
    assert f'<p id="decision">{decision["text"]}</p>' in page
    assert f'data-value="{decision["candidate"]!r}">{decision["candidate"]:.4f}<' in page
    assert f'data-value="{decision["baseline"]!r}">{decision["baseline"]:.4f}<' in page
    charts = [(alt, src) for alt, src in _images(page) if src.startswith(CHART_PREFIX)]
    assert [alt for alt, _ in charts] == CHART_TITLES
    for _, source in charts:
        svg = ElementTree.fromstring(base64.b64decode(source[len(CHART_PREFIX):]))
        assert float(svg.get("width")) > 0 and float(svg.get("height")) > 0
    thumbnails = [src for _, src in _images(page) if src.startswith(THUMBNAIL_PREFIX)]
    assert len(thumbnails) + len(charts) == len(_images(page)) and thumbnails
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<script" not in page
    assert "unlabeled/empty.png" in page and "empty file" in page


def test_pretraining_charts_have_epochs_on_the_x_axis_and_the_knn_at_the_epochs_it_was_measured(report_data):
    page = render_html(report_data)
    quality = _chart(page, "Encoder quality: kNN and online probe accuracy")
    ticks = _x_ticks(quality)
    assert list(ticks) == [str(epoch) for epoch in range(1, 11)]
    assert "epoch" in [text.text for text in quality.iter(f"{SVG}text")]  # the x axis' label
    # The kNN was measured every 4 epochs (the Pretrainer's settings): at epochs 4 and 8, not at "checks" 1 and 2.
    assert _polyline_xs(quality, "#1f77b4", dashed=False) == _at_ticks(ticks, [4, 8])
    # The online probe is recorded every epoch.
    assert _polyline_xs(quality, "#7570b3", dashed=True) == _at_ticks(ticks, range(1, 11))
    legend = [text.text for text in quality.iter(f"{SVG}text")]
    assert "online linear probe (labeled train images)" in legend and "kNN accuracy (eval split)" in legend
    assert "measured every 4 epochs (training.monitor_every_epochs in the Trainer&#39;s settings)" in page
    for title in ("Pretraining loss", "Collapse signal: contrastive accuracy"):
        chart = _chart(page, title)
        assert _polyline_xs(chart, "#1f77b4", dashed=False) == _at_ticks(_x_ticks(chart), range(1, 11))


def test_knn_check_epochs_follow_the_setting_or_the_only_spacing_the_counts_allow():
    assert knn_check_epochs(4, 4).epochs == [1, 2, 3, 4]  # a check every epoch (the default)
    assert knn_check_epochs(2, 4).epochs == [2, 4]  # only every 2 epochs gives 2 checks in 4
    assert knn_check_epochs(2, 10, every=4).epochs == [4, 8]
    ambiguous = knn_check_epochs(2, 10)  # every 4 or 5 epochs
    assert ambiguous.epochs is None and "fit training.monitor_every_epochs = 4, 5" in ambiguous.explanation
    contradicted = knn_check_epochs(2, 10, every=3)  # 3 would give 3 checks: the setting is not this run's
    assert contradicted.epochs is None and "would give 3" in contradicted.explanation
    assert knn_check_epochs(0, 10).epochs == []


def test_without_recorded_settings_an_ambiguous_knn_schedule_is_drawn_by_check_and_said(report_data):
    data = dict(report_data, settings={role: None for role in TRAINER_SETTINGS})
    page = render_html(data)
    quality = _chart(page, "Encoder quality: kNN and online probe accuracy")
    assert "kNN check (its epoch is unknown)" in [text.text for text in quality.iter(f"{SVG}text")]
    probe = _chart(page, "Online probe accuracy of the encoder")  # the probe keeps its epoch axis
    assert _polyline_xs(probe, "#7570b3", dashed=True) == _at_ticks(_x_ticks(probe), range(1, 11))
    assert "2 kNN checks in 10 epochs fit training.monitor_every_epochs = 4, 5" in page
    assert '<p id="trainer-settings" class="note">The Trainers\' history.json files record no settings.</p>' in page


def test_pretraining_section_shows_the_pretrainers_augmented_views_with_a_caption(report_data):
    assert base64.b64decode(report_data["augmented_views"]["png"]) == AUGMENTED_VIEWS_PNG
    section = re.search(r'<section id="pretraining">(.*?)</section>', render_html(report_data), re.DOTALL).group(1)
    image = f'src="data:image/png;base64,{base64.b64encode(AUGMENTED_VIEWS_PNG).decode("ascii")}"'
    assert image in section
    assert ("<figcaption>Each row: a pretraining image as decoded, its first augmented view and its second, from "
            "the pretraining augmenter (its training.pretrain_augment was not recorded), seeded with "
            "training.seed.</figcaption>") in section  # the fixture's Pretrainer records no pretrain_augment
    overridden = dict(report_data, augmented_views=dict(report_data["augmented_views"],
                                                         pretrain_augment={"blur_probability": 0.0, "hue": 0.1}))
    assert ("the strong preset with training.pretrain_augment blur_probability=0.0, hue=0.1, seeded"
            in render_html(overridden))
    assert "the strong preset (training.pretrain_augment sets nothing)" in render_html(
        dict(report_data, augmented_views=dict(report_data["augmented_views"], pretrain_augment={})))


def test_without_augmented_views_the_pretraining_section_says_so_in_one_line(report_data):
    page = render_html(dict(report_data, augmented_views=None))  # an older run, or pretrain_epochs 0
    assert ('<p id="augmented-views" class="note">No augmented views: the Pretrainer wrote no augmented_views.png '
            '(an older run, or pretrain_epochs 0).</p>') in page
    assert "data:image/png" not in re.search(r'<section id="pretraining">(.*?)</section>', page, re.DOTALL).group(1)
    older = {key: value for key, value in report_data.items() if key != "augmented_views"}  # older report data
    assert 'id="augmented-views" class="note"' in render_html(older)


def test_classifier_training_charts_mark_the_phases_on_the_epoch_axis(report_data):
    page = render_html(report_data)
    for title in ("Classifier training accuracy", "Classifier training loss"):
        chart = _chart(page, title)
        ticks = _x_ticks(chart)
        # Candidate: linear head epochs 1-2, whole network 3, distillation 4-5; baseline: epochs 1-3.
        for dashed in (False, True):
            assert _polyline_xs(chart, "#1f77b4", dashed) == _at_ticks(ticks, range(1, 6))
            assert _polyline_xs(chart, "#d95f02", dashed) == _at_ticks(ticks, range(1, 4))
        separators = [float(line.get("x1")) for line in chart.iter(f"{SVG}line")
                      if line.get("class") == "band-separator"]
        assert separators == [pytest.approx((ticks["2"] + ticks["3"]) / 2, abs=0.1),
                              pytest.approx((ticks["3"] + ticks["4"]) / 2, abs=0.1)]
        labels = [text.text for text in chart.iter(f"{SVG}text") if text.get("class") == "band-label"]
        assert labels == ["linear head", "whole network", "distillation"]
    assert ("Candidate: linear head (epochs 1-2), then whole network (epoch 3), then distillation (epochs 4-5)"
            in page)


def test_distillation_curves_are_drawn_when_the_candidate_was_distilled(report_data):
    page = render_html(report_data)
    losses = _chart(page, "Distillation loss")
    legend = [text.text for text in losses.iter(f"{SVG}text")]
    assert {"total", "soft targets (teacher)", "labels (cross-entropy)"} <= set(legend)
    assert "distillation epoch" in legend
    agreement = _chart(page, "Distillation: agreement with the teacher")
    assert _polyline_xs(agreement, "#1f77b4", dashed=False) == _at_ticks(_x_ticks(agreement), [1, 2])
    without = copy.deepcopy(report_data)
    without["histories"]["candidate"] = {key: values for key, values in HISTORIES["candidate"].items()
                                         if not key.startswith("distill/")}
    page = render_html(without)
    assert "Distillation loss" not in page and 'id="distillation"' not in page
    labels = [text.text for text in _chart(page, "Classifier training accuracy").iter(f"{SVG}text")
              if text.get("class") == "band-label"]
    assert labels == ["linear head", "whole network"]


def test_fixmatch_curves_are_drawn_like_the_distillation_curves_when_the_candidate_had_fixmatch(report_data):
    """FixMatch's loss terms and share of pseudo-labelled images, by the same stage charts as distillation."""
    with_fixmatch = copy.deepcopy(report_data)
    with_fixmatch["histories"]["candidate"].update({
        "fixmatch/loss": [1.5, 1.2], "fixmatch/unlabeled_loss": [0.6, 0.5], "fixmatch/labeled_loss": [0.9, 0.7],
        "fixmatch/confident_fraction": [0.3, 0.6]})
    page = render_html(with_fixmatch)
    legend = [text.text for text in _chart(page, "FixMatch loss").iter(f"{SVG}text")]
    assert {"total", "pseudo-labels (strong views)", "labels (cross-entropy)", "FixMatch epoch"} <= set(legend)
    share = _chart(page, "FixMatch: unlabeled images with a pseudo-label")
    assert _polyline_xs(share, "#1f77b4", dashed=False) == _at_ticks(_x_ticks(share), [1, 2])
    assert "FixMatch loss" not in render_html(report_data)  # the fixture's candidate had no FixMatch


def test_top_k_accuracy_is_shown_only_when_k_is_below_the_number_of_classes(report_data):
    page = render_html(report_data)  # 4 classes: top-3 accuracy says something
    assert '<td class="name">top 3 accuracy</td>' in page and 'id="top-k-left-out"' not in page
    three_classes = copy.deepcopy(report_data)
    three_classes["class_names"] = CLASS_NAMES[:3]
    for role in ("candidate", "baseline"):
        model = three_classes["models"][role]
        model["metrics"]["top_3_accuracy"] = 1.0  # what TFMA computes with 3 classes
        model.update(confusion_matrix=None, per_class=None)
    page = render_html(three_classes)
    assert "top 3 accuracy</td>" not in page
    assert ('<p class="note" id="top-k-left-out">Not shown: top 3 accuracy. With 3 classes the true class is '
            "always among that many most probable ones") in page
    assert three_classes["models"]["candidate"]["metrics"]["top_3_accuracy"] == 1.0  # the data keeps TFMA's value


def test_templates_escape_every_value(report_data):
    data = copy.deepcopy(report_data)
    evil = "<script>alert('x')</script>"
    data["class_names"][3] = evil
    data["data"]["eval_per_class"] = {evil if name == "gray" else name: count
                                      for name, count in data["data"]["eval_per_class"].items()}
    data["examples"]["train_per_class"] = {evil if name == "gray" else name: count
                                           for name, count in data["examples"]["train_per_class"].items()}
    data["examples"]["misclassified"]["models"]["baseline"]["images"][0]["predicted"] = evil
    data["data"]["ignored_non_image_files"][0] = evil
    page = render_html(data)
    assert "<script" not in page
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
    # per-class rows, both confusion matrices (header and row), the class counts, a caption, the ignored files
    assert page.count(escaped) == 1 + 2 * 2 + 1 + 1 + 1


def test_data_section_names_eval_copies_ignored_files_links_and_the_input(report_data):
    page = render_html(report_data)
    assert "Input read by ImageExampleGen: 70 files, 123.5 kB (123,456 bytes); fingerprint" in page
    assert f'<code title="{INPUT_FINGERPRINT["fingerprint"]}">0123456789ab</code>' in page
    assert ('<p id="eval-copies">1 unlabeled or train image is a byte-for-byte copy of an eval image: dropped from '
            "training (data.on_eval_duplicates: drop).</p>") in page
    assert ('<td class="name">unlabeled/copy-of-red.png</td><td class="name">unlabeled</td>'
            '<td class="name">test/red/0.png</td>') in page
    ignored = re.search(r'<p id="ignored-files">(.*?)</p>', page).group(1)
    assert ignored.startswith("24 files without an image extension")
    assert ignored.count("<code>") == 20 and "<code>unlabeled/notes-00.txt</code>" in ignored
    assert ignored.endswith(" and 4 more.")
    assert "labeled/red/photo.webp" not in page  # the 24th: past the first 20
    assert '<p id="links-not-followed">2 symbolic links were not followed:</p>' in page
    for link in LINKS_NOT_FOLLOWED:
        assert f'<td class="name"><code>{link["path"]}</code></td><td class="name">{link["reason"]}</td>' in page
    assert '<td>copies of eval images</td>' not in page and "<th>copies of eval images</th>" in page
    assert '<td class="name">unlabeled</td><td>42</td><td>40</td><td>1</td><td>1</td>' in page


def test_class_counts_show_train_from_the_examples_and_eval_from_the_ingest_report(report_data):
    assert report_data["examples"]["train_per_class"] == dict(zip(CLASS_NAMES, TRAIN_PER_CLASS))
    assert report_data["data"]["eval_per_class"] == {name: EXAMPLES_PER_CLASS for name in CLASS_NAMES}
    page = render_html(report_data)
    table = re.search(r'<div id="class-counts">(.*?)</div>', page, re.DOTALL).group(1)
    assert "<th>train images (ingested)</th><th>eval images</th>" in table
    for name, train in zip(CLASS_NAMES, TRAIN_PER_CLASS):
        assert f'<tr><td class="name">{name}</td><td>{train}</td><td>{EXAMPLES_PER_CLASS}</td></tr>' in table
    assert "The Trainers fine-tuned on 7 of these 8 images (training.labels_per_class" in page


def test_misclassified_grid_shows_each_models_wrong_answers_with_true_and_predicted_class(tiny_run, report_data):
    misclassified = report_data["examples"]["misclassified"]
    assert misclassified["examined"] == len(tiny_run.labels)
    labels = np.array(tiny_run.labels)
    page = render_html(report_data)
    for role, model_uri in (("candidate", tiny_run.inputs.candidate_model_uri),
                            ("baseline", tiny_run.inputs.baseline_model_uri)):
        predicted = _predictions(model_uri, tiny_run.images).argmax(axis=1)
        wrong = np.flatnonzero(predicted != labels)
        found = misclassified["models"][role]
        assert found["wrong"] == len(wrong) > 0
        assert [(image["id"], image["label"], image["predicted"]) for image in found["images"]] == [
            (f"test/{CLASS_NAMES[labels[index]]}/{index}.png", CLASS_NAMES[labels[index]],
             CLASS_NAMES[predicted[index]]) for index in wrong[:24]]
        for image in found["images"]:
            with Image.open(io.BytesIO(base64.b64decode(image["thumbnail"]))) as thumbnail:
                assert thumbnail.format == "PNG" and thumbnail.size == (96, 96)  # 4x4 scaled up, sharp
        grid = re.search(rf'<div class="thumbnails" id="misclassified-{role}">(.*?)</div>', page, re.DOTALL).group(1)
        assert grid.count("<figure>") == len(found["images"])
        first = found["images"][0]
        assert (f'<figcaption>true: <b>{first["label"]}</b><br>predicted: <b>{first["predicted"]}</b>'
                in grid)
        assert f'id="misclassified-{role}-title">{role}: {len(wrong)} of {len(labels)} wrong</h3>' in page
    # The baseline calls every red image gray (the fixture's models).
    assert {image["predicted"] for image in misclassified["models"]["baseline"]["images"]
            if image["label"] == "red"} == {"gray"}


def test_without_the_examples_input_the_report_still_renders_and_says_what_is_missing(tiny_run):
    data = collect_report_data(dataclasses.replace(tiny_run.inputs, examples_uri=None))
    assert data["examples"] is None
    page = render_html(data)
    assert not [src for _, src in _images(page) if src.startswith(THUMBNAIL_PREFIX)]
    assert "Not available: this report was made without the eval examples" in page
    table = re.search(r'<div id="class-counts">(.*?)</div>', page, re.DOTALL).group(1)
    assert "train images" not in table and "<th>eval images</th>" in table
    assert "Train images per class are not shown: the ingest report counts them per split only" in page


def test_report_shows_the_versions_and_the_trainer_settings(report_data):
    assert report_data["versions"] == {name: importlib.metadata.version(name) for name in VERSIONED_PACKAGES}
    page = render_html(report_data)
    versions = re.search(r'<div id="versions">(.*?)</div>', page, re.DOTALL).group(1)
    for name in ("selfsup", "tfx", "tensorflow", "keras"):
        assert f'<td class="name">{name}</td><td>{importlib.metadata.version(name)}</td>' in versions
    settings = re.search(r'<div id="trainer-settings">(.*?)</div>', page, re.DOTALL).group(1)
    assert "<th>setting</th><th>pretrainer</th><th>candidate</th></tr>" in settings  # the baseline recorded none
    assert '<td class="name">monitor_every_epochs</td><td class="name">4</td><td class="name"></td>' in settings
    assert ('<td class="name">pretrain_augment</td><td class="name"></td>'
            '<td class="name">{&#34;crop_scale&#34;: [0.2, 1.0]}</td>') in settings


def test_executor_writes_report_and_data_into_the_artifact(tiny_run, report_data):
    with open(os.path.join(tiny_run.report_uri, report_executor.REPORT_DATA_FILE)) as handle:
        written = json.load(handle)
    assert written == json.loads(json.dumps(report_data))
    with open(os.path.join(tiny_run.report_uri, contract.REPORT_FILE)) as handle:
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


def test_eval_config_adds_the_report_metrics():
    eval_config = build_eval_config(RULE)
    names = {metric.class_name for spec in eval_config.metrics_specs for metric in spec.metrics}
    assert {"SparseCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "MultiClassConfusionMatrixPlot",
            "CalibrationPlot", "ExampleCount"} <= names
    assert not any(spec.binarize.class_ids.values for spec in eval_config.metrics_specs)  # per class: the matrix


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


def test_an_older_runs_ingest_report_without_the_new_fields_still_renders(report_data):
    """`selfsup report` on a run whose ingest report predates the input fingerprint and the eval-copy checks."""
    older = copy.deepcopy(report_data)
    older["data"] = {key: older["data"][key] for key in ("source", "location", "splits", "skipped")}
    older["data"].update(input=None, eval_per_class=None, eval_duplicates=None, ignored_non_image_files=None,
                         links_not_followed=None)
    for counts in older["data"]["splits"].values():
        del counts["duplicates_of_eval"]
    page = render_html(older)
    assert "The ingest report records no input fingerprint (an older run)." in page
    assert '<p id="eval-copies" class="note">Not recorded (an older ingest report).</p>' in page
    assert '<td class="name">unlabeled</td><td>42</td><td>40</td><td>1</td><td>n/a</td>' in page
    assert "Eval per class is not in this (older) ingest report." in page
