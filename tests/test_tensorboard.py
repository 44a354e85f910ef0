"""TensorBoard logs: every training phase in its own folder of the ModelRun artifact, every epoch kept.

The Trainers (run.train_and_export) on real digit scans: a Pretrainer (pretrain/), a candidate with a
linear head, whole-network fine-tuning and distillation (linear/, finetune/, distill/) and a baseline
(supervised/). Each folder's train/ and validation/ event files hold one `epoch_loss` per epoch of that
phase, equal to the phase's history in history.json.
"""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from trainer import data, run
from trainer.hparams import TrainingConfig

IMAGE_SIZE = 32
TINY = dict(fixmatch_epochs=0,  # FixMatch: tests/test_fixmatch.py
            encoder="small_cnn", encoder_width=16, image_size=IMAGE_SIZE, batch_size=128, finetune_batch_size=32,
            projection_dim=16, projection_hidden_dim=16, knn_k=3, monitor_every_epochs=100, seed=0,
            strategy="default", pretrain_epochs=2, linear_epochs=2, finetune_epochs=3, distill_epochs=2)


def epoch_losses(folder: str) -> dict:
    """{epoch: epoch_loss} of the TensorBoard event files in `folder`."""
    losses = {}
    for path in glob.glob(os.path.join(folder, "*tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "epoch_loss":
                    assert event.step not in losses, f"epoch {event.step} written twice in {folder}"
                    losses[event.step] = float(tf.make_ndarray(value.tensor))
    return losses


def train(examples_uri, folder, role, config, base_model=None):
    """run.train_and_export for `role`; returns (history, its ModelRun folder, its serving folder)."""
    custom_config = {"pretrainer": config.pretraining_dict, "candidate": config.to_dict,
                     "baseline": config.baseline_dict}[role]()
    serving_dir = str(folder / "model" / "1" / "Format-Serving")
    log_dir = str(folder / "model_run" / "1")
    history = run.train_and_export(dict(custom_config, role=role), data.split_files(examples_uri, "train"),
                                   serving_dir, log_dir, str(folder / "backup"), base_model=base_model)
    return history, log_dir, serving_dir


@pytest.fixture(scope="module")
def trained(digits_examples_uri, tmp_path_factory):
    """{role: (history, ModelRun folder)} of the three Trainers."""
    config = TrainingConfig(**TINY)
    root = tmp_path_factory.mktemp("tensorboard")
    pretrainer_history, pretrainer_logs, encoder_dir = train(digits_examples_uri, root / "Pretrainer", "pretrainer",
                                                             config)
    candidate_history, candidate_logs, _ = train(digits_examples_uri, root / "CandidateTrainer", "candidate", config,
                                                 base_model=encoder_dir)
    baseline_history, baseline_logs, _ = train(digits_examples_uri, root / "BaselineTrainer", "baseline", config)
    return {"pretrainer": (pretrainer_history, pretrainer_logs), "candidate": (candidate_history, candidate_logs),
            "baseline": (baseline_history, baseline_logs)}


# Epochs of each phase: as configured; the baseline's linear + finetune epochs, then as many as the
# candidate's semi-supervised stages in its `matched` phase (trainer/finetune.py).
EPOCHS = {"pretrain": TINY["pretrain_epochs"], "linear": TINY["linear_epochs"],
          "finetune": TINY["finetune_epochs"], "distill": TINY["distill_epochs"],
          "supervised": TINY["linear_epochs"] + TINY["finetune_epochs"], "matched": TINY["distill_epochs"]}


@pytest.mark.parametrize("role, phases", [
    ("pretrainer", ["pretrain"]),
    ("candidate", ["distill", "finetune", "linear"]),
    ("baseline", ["matched", "supervised"]),
])
def test_every_phase_has_its_own_folder_with_every_epoch(trained, role, phases):
    history, log_dir = trained[role]
    assert sorted(os.listdir(log_dir)) == phases
    for phase in phases:
        epochs = len(history[f"{phase}/loss"])
        assert epochs == EPOCHS[phase]
        # Pretraining has no validation data; the classifier phases evaluate on the eval split every epoch.
        subfolders = {"train": "loss"} if phase == "pretrain" else {"train": "loss", "validation": "val_loss"}
        for subfolder, key in subfolders.items():
            losses = epoch_losses(os.path.join(log_dir, phase, subfolder))
            assert sorted(losses) == list(range(epochs)), (phase, subfolder, sorted(losses))
            np.testing.assert_allclose([losses[epoch] for epoch in range(epochs)], history[f"{phase}/{key}"],
                                       rtol=1e-5, err_msg=f"{phase}/{subfolder}")
