"""End to end: the real pipeline (Beam, MLMD in SQLite, TFMA) through the `selfsup` CLI on real images.

Two runs in one output folder:
1. margin -0.99: the candidate is blessed whatever the accuracies, so the push path runs;
2. margin +0.99: nothing can be blessed; the data and training components come from the cache,
   the Evaluator decides again, nothing is pushed, and the earlier pushed model is untouched.
"""

import hashlib
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from pipeline.config import EvaluationConfig
from pipeline.evaluation import is_blessed
from pipeline.pipeline import COMPONENT_IDS
from pipeline.run_results import latest_run, open_store

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


def write_config(tmp_path, name, margin):
    path = tmp_path / name
    path.write_text(TRAINING + f"evaluation:\n  min_accuracy: 0.0\n  margin: {margin}\n")
    return path


@pytest.fixture(scope="module")
def two_runs(cifar_sample, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("e2e")
    output = tmp_path / "output"
    data_before = tree_checksums(cifar_sample)
    first, first_stdout = run_cli(cifar_sample, output, write_config(tmp_path, "bless.yaml", -0.99))
    first_states = latest_run(open_store(str(output / "metadata.sqlite")), "selfsup")
    serving_before = tree_checksums(output / "serving")
    second, second_stdout = run_cli(cifar_sample, output, write_config(tmp_path, "strict.yaml", 0.99))
    second_states = latest_run(open_store(str(output / "metadata.sqlite")), "selfsup")
    return dict(output=output, data_before=data_before, data=cifar_sample, first=first, second=second,
                first_states=first_states, second_states=second_states, serving_before=serving_before,
                first_stdout=first_stdout)


def test_every_component_executed(two_runs):
    assert {component: result["state"] for component, result in two_runs["first_states"].items()} == {
        component: "COMPLETE" for component in COMPONENT_IDS}
    assert two_runs["first"]["components"] == {component: "COMPLETE" for component in COMPONENT_IDS}


def test_summary_reports_counts_and_a_decision_that_agrees_with_the_accuracies(two_runs):
    for summary, margin in ((two_runs["first"], -0.99), (two_runs["second"], 0.99)):
        candidate, baseline = summary["candidate"]["accuracy"], summary["baseline"]["accuracy"]
        assert 0.0 <= candidate <= 1.0 and 0.0 <= baseline <= 1.0
        assert summary["blessed"] is is_blessed(candidate, baseline, EvaluationConfig(margin=margin))
        assert summary["method"] == "simclr"
        assert {split: counts["written"] for split, counts in summary["data"]["splits"].items()} == {
            "unlabeled": 300, "train": 120, "eval": 90}
        assert all(counts["skipped"] == 0 for counts in summary["data"]["splits"].values())
    assert two_runs["first"]["blessed"] is True
    assert two_runs["second"]["blessed"] is False and two_runs["second"]["pushed_model"] is None
    assert "BLESSED" in two_runs["first_stdout"]


def test_pushed_model_answers_raw_jpeg_bytes_with_a_class(two_runs):
    pushed = two_runs["first"]["pushed_model"]
    assert pushed and pushed.startswith(str(two_runs["output"] / "serving"))
    model = tf.saved_model.load(pushed)
    jpegs = [path.read_bytes() for path in sorted(two_runs["data"].glob("test/*/*.jpg"))[:5]]
    result = model.signatures["serving_images"](images=tf.constant(jpegs))
    class_names = two_runs["first"]["data"]["class_names"]
    assert class_names == ["airplane", "automobile", "frog"]
    assert {name.decode() for name in result["classes"].numpy()} <= set(class_names)


def test_rerun_reuses_the_cache_and_keeps_the_earlier_push(two_runs):
    states = {component: result["state"] for component, result in two_runs["second_states"].items()}
    for component in ("ImageExampleGen", "StatisticsGen", "SchemaGen", "CandidateTrainer", "BaselineTrainer"):
        assert states[component] == "CACHED", states
    assert states["Evaluator"] == "COMPLETE"  # its config changed
    assert tree_checksums(two_runs["output"] / "serving") == two_runs["serving_before"]


def test_user_data_is_untouched_and_outputs_stay_in_the_output_folder(two_runs):
    assert tree_checksums(two_runs["data"]) == two_runs["data_before"]
    assert sorted(os.listdir(two_runs["output"])) == ["metadata.sqlite", "serving", "summary.json", "tfx"]
