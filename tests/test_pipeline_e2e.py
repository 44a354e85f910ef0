"""End to end: the real pipeline (Beam, MLMD in SQLite, TFMA) through the `selfsup` CLI on real images.

Four runs in one output folder:
1. margin -0.99: the candidate is blessed whatever the accuracies, so the push path runs;
2. margin +0.99: nothing can be blessed; the data and training components come from the cache,
   the Evaluator decides again, nothing is pushed, and the earlier pushed model is untouched;
3. a training setting changed: both Trainers run again, the data components still come from the cache;
4. the same with evaluation.compare_to_pushed: the candidate is the model run 3 pushed, so it does not
   beat the model in production, and nothing is pushed although it beats the supervised baseline.
"""

import hashlib
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from conftest import SAMPLE_CLASSES

from pipeline.config import EvaluationConfig
from pipeline.evaluation import is_blessed
from pipeline.pipeline import COMPONENT_IDS
from pipeline.results.run_results import open_store, run_results

pytestmark = pytest.mark.e2e

TRAINING = """
training:
  encoder_width: 16
  projection_dim: 16
  projection_hidden_dim: 32
  batch_size: 64
  pretrain_epochs: 2
  linear_epochs: 2
  finetune_epochs: 1
  fixmatch_epochs: 1
  knn_k: 5
"""


def tree_checksums(root) -> dict:
    checksums = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                checksums[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return checksums


def run_cli(data, output, config_path):
    command = [sys.executable, "-m", "pipeline.cli", "run", "--data", str(data), "--output", str(output),
               "--config", str(config_path)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    with open(os.path.join(output, "summary.json")) as handle:
        return json.load(handle), completed.stdout


def write_config(tmp_path, name, margin, training=TRAINING, compare_to_pushed=False):
    path = tmp_path / name
    path.write_text(training + f"evaluation:\n  min_accuracy: 0.0\n  margin: {margin}\n"
                    f"  compare_to_pushed: {str(compare_to_pushed).lower()}\n")
    return path


def states_of(output, summary):
    """What MLMD recorded for the run the summary names (by its run id)."""
    return run_results(open_store(str(output / "metadata.sqlite")), "selfsup", summary["run_id"])


@pytest.fixture(scope="module")
def runs(real_images, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("e2e")
    output = tmp_path / "output"
    data_before = tree_checksums(real_images)
    first, first_stdout = run_cli(real_images, output, write_config(tmp_path, "bless.yaml", -0.99))
    first_states = states_of(output, first)
    serving_before = tree_checksums(output / "serving")
    second, second_stdout = run_cli(real_images, output, write_config(tmp_path, "strict.yaml", 0.99))
    second_states = states_of(output, second)
    serving_after_second = tree_checksums(output / "serving")
    # Only fine-tuning settings and the label budget change: the Pretrainer's encoder is reused.
    changed_training = TRAINING.replace("finetune_epochs: 1", "finetune_epochs: 2\n  labels_per_class: 30")
    third, _ = run_cli(real_images, output, write_config(tmp_path, "retrain.yaml", -0.99, changed_training))
    third_states = states_of(output, third)
    serving_after_third = tree_checksums(output / "serving")
    fourth, _ = run_cli(real_images, output, write_config(tmp_path, "production.yaml", -0.99, changed_training,
                                                           compare_to_pushed=True))
    fourth_states = states_of(output, fourth)
    return dict(output=output, data_before=data_before, data=real_images, first=first, second=second,
                third=third, fourth=fourth, first_states=first_states, second_states=second_states,
                third_states=third_states, fourth_states=fourth_states, serving_before=serving_before,
                serving_after_second=serving_after_second, serving_after_third=serving_after_third,
                serving_after_fourth=tree_checksums(output / "serving"), first_stdout=first_stdout)


def test_every_component_executed(runs):
    assert {component: result["state"] for component, result in runs["first_states"].items()} == {
        component: "COMPLETE" for component in COMPONENT_IDS}
    assert runs["first"]["components"] == {component: "COMPLETE" for component in COMPONENT_IDS}


def test_summary_reports_counts_and_a_decision_that_agrees_with_the_accuracies(runs):
    for summary, margin in ((runs["first"], -0.99), (runs["second"], 0.99)):
        candidate, baseline = summary["candidate"]["accuracy"], summary["baseline"]["accuracy"]
        assert 0.0 <= candidate <= 1.0 and 0.0 <= baseline <= 1.0
        assert summary["blessed"] is is_blessed(candidate, baseline, EvaluationConfig(margin=margin))
        assert summary["method"] == "simclr"
        assert {split: counts["written"] for split, counts in summary["data"]["splits"].items()} == {
            "unlabeled": 300, "train": 120, "eval": 90}
        assert all(counts["skipped"] == 0 for counts in summary["data"]["splits"].values())
        assert set(summary["component_seconds"]) == set(summary["components"])
        assert all(seconds >= 0 for seconds in summary["component_seconds"].values())
        assert summary["versions"]["tfx"] == "1.16.0" and summary["started"] <= summary["finished"]
        # Paths are relative to the output folder, so that it can be moved whole.
        assert summary["data"]["ingest_report"].startswith("tfx/ImageExampleGen/report/")
        assert summary["evaluation"].startswith("tfx/Evaluator/evaluation/")
        assert {role: timing["model"].split("/")[:2] for role, timing in summary["timings"].items()} == {
            role: ["tfx", component] for role, component in (
                ("pretrainer", "Pretrainer"), ("candidate", "CandidateTrainer"), ("baseline", "BaselineTrainer"))}
        assert (runs["output"] / summary["timings"]["pretrainer"]["model"] / "encoder.json").is_file()
    assert runs["first"]["component_seconds"]["Pretrainer"] > 0
    assert runs["first"]["blessed"] is True
    assert runs["second"]["blessed"] is False and runs["second"]["pushed_model"] is None
    assert "BLESSED" in runs["first_stdout"]


def test_pushed_model_answers_raw_jpeg_bytes_with_a_class(runs):
    pushed = runs["first"]["pushed_model"]
    assert pushed and pushed.startswith("serving/")  # relative to the output folder
    model = tf.saved_model.load(str(runs["output"] / pushed))
    jpegs = [path.read_bytes() for path in sorted(runs["data"].glob("test/*/*.jpg"))[:5]]
    result = model.signatures["serving_images"](images=tf.constant(jpegs))
    class_names = runs["first"]["data"]["class_names"]
    assert class_names == list(SAMPLE_CLASSES)
    assert {name.decode() for name in result["classes"].numpy()} <= set(class_names)


def test_rerun_reuses_the_cache_and_keeps_the_earlier_push(runs):
    states = {component: result["state"] for component, result in runs["second_states"].items()}
    for component in ("ImageExampleGen", "StatisticsGen", "SchemaGen", "CandidateTrainer", "BaselineTrainer"):
        assert states[component] == "CACHED", states
    assert states["Evaluator"] == "COMPLETE"  # its config changed
    assert runs["serving_after_second"] == runs["serving_before"]
    second = runs["second"]
    assert second["data"]["input"]["ingestion"].startswith("reused from the cache: the input files are unchanged")
    if states["Pusher"] == "CACHED":  # a push reused from the cache is an earlier run's, not this one's
        assert "Nothing was pushed in this run" in second["decision"] and second["pushed_model"] is None


def test_changed_fine_tuning_retrains_from_the_cached_encoder_and_pushes_beside_the_earlier_model(runs):
    states = {component: result["state"] for component, result in runs["third_states"].items()}
    assert states["ImageExampleGen"] == "CACHED" and states["StatisticsGen"] == "CACHED"
    assert states["Pretrainer"] == "CACHED"
    assert states["CandidateTrainer"] == "COMPLETE" and states["BaselineTrainer"] == "COMPLETE"
    # The candidate's fine-tuning started from the cached encoder's weights.
    encoder = runs["third_states"]["Pretrainer"]["outputs"]["model"][0].uri
    with open(os.path.join(encoder, "encoder.json")) as handle:
        encoder_digest = json.load(handle)["weights_digest"]
    candidate = runs["third_states"]["CandidateTrainer"]["outputs"]["model"][0].uri
    with open(os.path.join(candidate, "history.json")) as handle:
        record = json.load(handle)
    assert record["encoder"]["weights_digest"] == encoder_digest
    assert record["encoder"]["base_model"].startswith(encoder)
    assert runs["third"]["labeled_train_images"] == 3 * 30 and runs["first"]["labeled_train_images"] == 3 * 40
    assert runs["third"]["blessed"] is True
    assert runs["third"]["pushed_model"] != runs["first"]["pushed_model"]
    assert len(os.listdir(runs["output"] / "serving")) == 2
    earlier = {path: digest for path, digest in tree_checksums(runs["output"] / "serving").items()
               if path in runs["serving_before"]}
    assert earlier == runs["serving_before"]


def test_a_candidate_that_does_not_beat_the_model_in_production_is_not_pushed(runs):
    states = {component: result["state"] for component, result in runs["fourth_states"].items()}
    assert states["CandidateTrainer"] == "CACHED" and states["Evaluator"] == "CACHED"
    assert {states[component] for component in ("ProductionModel", "ProductionEvaluator", "BlessingGate")} == {
        "COMPLETE"}
    fourth = runs["fourth"]
    assert fourth["candidate"] == runs["third"]["candidate"] and runs["third"]["blessed"]  # beats the baseline
    assert fourth["production"] == {"production_model": runs["third"]["pushed_model"],
                                    "candidate": fourth["candidate"]["accuracy"],
                                    "production": fourth["candidate"]["accuracy"], "difference": 0.0,
                                    "passed": False}
    assert fourth["blessed"] is False and fourth["pushed_model"] is None
    assert runs["serving_after_fourth"] == runs["serving_after_third"]
    assert f"vs the model in production ({runs['output'] / runs['third']['pushed_model']})" in fourth["decision"]


def test_user_data_is_untouched_and_outputs_stay_in_the_output_folder(runs):
    assert tree_checksums(runs["data"]) == runs["data_before"]
    assert sorted(os.listdir(runs["output"])) == [".selfsup.lock", "config.yaml", "metadata.sqlite", "report.html",
                                                  "serving", "summary.json", "tfx"]


def test_report_is_published_and_carries_the_same_decision(runs):
    summary = runs["fourth"]  # the latest run's report is OUT/report.html
    assert summary["report"] == "report.html"
    with open(runs["output"] / summary["report"], encoding="utf-8") as handle:
        html = handle.read()
    assert summary["decision"].split(":")[0] in html
    assert f"{summary['candidate']['accuracy']:.4f}" in html and f"{summary['baseline']['accuracy']:.4f}" in html
    assert f'id="production-accuracy" data-value="{summary["production"]["production"]!r}"' in html
