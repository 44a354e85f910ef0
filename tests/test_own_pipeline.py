"""End to end: the own-pipeline example (pipeline/examples/own_pipeline.py, docs/own_pipeline.md) with TFX's
LocalDagRunner on the digits: selfsup's ImageExampleGen, AnomalyGate, Trainer module and EvaluationReportGen in a
user's pipeline, and the same Trainers fed by ImportExampleGen from TFRecords under other feature keys."""

import glob
import json
import logging
import os

import pytest
from tfx import v1 as tfx

from pipeline.config import EvaluationConfig
from pipeline.demo_data import write_digits_dataset, write_digits_tfrecords
from pipeline.examples import own_pipeline
from trainer import log as log_module
from trainer.hparams import TrainingConfig

pytestmark = pytest.mark.e2e

TINY = dict(fixmatch_epochs=0,  # FixMatch: tests/test_fixmatch.py
            encoder_width=16, projection_dim=16, projection_hidden_dim=32, batch_size=64, pretrain_epochs=1,
            linear_epochs=1, finetune_epochs=1, knn_k=5, precision="float32")
# Blessed whatever the accuracies, so that the Pusher pushes.
EVALUATION = EvaluationConfig(min_accuracy=0.0, margin=-0.99, min_eval_per_class=10)


def only(pattern):
    found = glob.glob(pattern)
    assert len(found) == 1, (pattern, found)
    return found[0]


def history(pipeline_root, component_id):
    with open(only(os.path.join(pipeline_root, component_id, "model", "*", "history.json"))) as handle:
        return json.load(handle)


def test_the_example_pipeline_on_an_image_folder(tmp_path):
    data_dir = tmp_path / "digits"
    write_digits_dataset(str(data_dir), labeled_per_class=5, test_per_class=10)
    paths = own_pipeline.output_paths(str(tmp_path / "output"))

    tfx.orchestration.LocalDagRunner().run(own_pipeline.create_image_pipeline(
        data_dir=str(data_dir), training=TrainingConfig(**TINY), evaluation=EVALUATION, **paths))

    candidate = history(paths["pipeline_root"], "CandidateTrainer")
    assert candidate["class_names"] == [str(digit) for digit in range(10)]
    assert candidate["labeled_train_images"] == 50
    assert history(paths["pipeline_root"], "Pretrainer")["history"]["pretrain/loss"]
    assert os.path.isfile(only(os.path.join(paths["pipeline_root"], "EvaluationReportGen", "report", "*",
                                            "report.html")))
    assert len(os.listdir(paths["serving_dir"])) == 1  # blessed and pushed


def test_the_example_pipeline_on_tfrecords_through_import_example_gen(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=log_module.NAME)
    tfrecord_dir = tmp_path / "tfrecords"
    written = write_digits_tfrecords(str(tfrecord_dir), image_feature="image/encoded",
                                     label_feature="image/class/label")
    paths = own_pipeline.output_paths(str(tmp_path / "output"))
    training = TrainingConfig(image_feature="image/encoded", label_feature="image/class/label", labels_per_class=5,
                              **TINY)

    tfx.orchestration.LocalDagRunner().run(own_pipeline.create_tfrecord_pipeline(
        tfrecord_dir=str(tfrecord_dir), training=training, evaluation=EVALUATION, **paths))

    log = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith(log_module.NAME + "."))
    assert "have no 'unlabeled' split" in log and "no ingest_report.json beside the splits" in log
    pretrainer = history(paths["pipeline_root"], "Pretrainer")
    assert pretrainer["class_names"] == [str(digit) for digit in range(10)]
    with open(only(os.path.join(paths["pipeline_root"], "Pretrainer", "model", "*", "encoder.json"))) as handle:
        pretraining_images = json.load(handle)["pretraining_images"]
    assert written / 2 < pretraining_images < written  # the train split (2/3 of them), nothing else
    assert history(paths["pipeline_root"], "BaselineTrainer")["labeled_train_images"] == 50
    assert os.path.isdir(only(os.path.join(paths["pipeline_root"], "Evaluator", "evaluation", "*")))
    assert len(os.listdir(paths["serving_dir"])) == 1
