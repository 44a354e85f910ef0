"""`selfsup run --label-budgets`: one pipeline run per budget and a comparison page."""

import json
import subprocess
import sys

import pytest
from ml_metadata.proto import metadata_store_pb2

from pipeline import cli
from pipeline.results.run_results import open_store


def test_fewer_than_two_budgets_fail_before_any_work(tmp_path, capsys):
    output = tmp_path / "out"
    assert cli.main(["run", "--data", str(tmp_path), "--output", str(output), "--label-budgets", "5"]) == 2
    assert "two or more distinct positive numbers" in capsys.readouterr().err
    assert not output.exists()


@pytest.mark.e2e
def test_two_budgets_pretrain_once_fine_tune_twice_and_compare(real_images, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("training:\n  encoder_width: 16\n  projection_dim: 16\n  projection_hidden_dim: 16\n"
                      "  batch_size: 64\n  pretrain_epochs: 1\n  linear_epochs: 1\n  finetune_epochs: 1\n"
                      "  fixmatch_epochs: 0\n")
    output = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--data", str(real_images), "--output", str(output),
         "--config", str(config), "--label-budgets", "20", "5"],
        capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-4000:]
    comparison = json.loads((output / "label_efficiency.json").read_text())
    assert [row["labels_per_class"] for row in comparison["runs"]] == [5, 20]
    assert [row["labeled_train_images"] for row in comparison["runs"]] == [15, 60]  # 3 classes
    for row in comparison["runs"]:
        summary = json.loads((output / f"labels-{row['labels_per_class']}" / "summary.json").read_text())
        assert row["candidate_accuracy"] == summary["candidate"]["accuracy"]
        assert row["baseline_accuracy"] == summary["baseline"]["accuracy"]
        # Ingestion does not depend on the budget: every labeled image is in the train split.
        assert summary["data"]["splits"]["unlabeled"]["written"] == 300
        assert summary["data"]["splits"]["train"]["written"] == 120
        assert summary["labels_per_class"] == row["labels_per_class"]
    # One pipeline root and one MLMD: the encoder was pretrained once, both budgets fine-tuned it.
    store = open_store(str(output / "metadata.sqlite"))
    pretrainer = store.get_context_by_type_and_name("node", "selfsup.Pretrainer")
    states = sorted(execution.last_known_state for execution in store.get_executions_by_context(pretrainer.id))
    assert states == sorted([metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED])
    assert comparison["pretrainer_runs"] == 1 and comparison["pretrain_seconds"] > 0
    assert [row["pretrainer"] for row in comparison["runs"]] == ["COMPLETE", "CACHED"]
    assert all(row["candidate_seconds"] > 0 for row in comparison["runs"])
    page = (output / "label_efficiency.html").read_text()
    assert "<svg" in page and "labels per class" in page
    assert 'href="labels-5/report.html"' in page
    assert "label efficiency of simclr" in completed.stdout
