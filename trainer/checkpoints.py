"""Fault tolerance: per-epoch backups from which a restarted Trainer resumes.

Where the backups live (`backup_root`): TFX gives every Trainer execution a fresh
`model_run_dir` (`<pipeline_root>/<TrainerId>/model_run/<execution_id>`), so nothing inside it
survives a retry. The backups go to `<pipeline_root>/<TrainerId>/backup/<key>` instead, where
`<key>` hashes the Examples artifact URI and the whole custom_config (every hyperparameter, the
role and the trainer code fingerprint). A retry of the same Trainer on the same inputs finds its
backup; a changed config, code or dataset gets a new, empty folder. A run that completes removes
its folder (TFX caches the successful execution, and a rerun without the cache should train from
scratch); a run that fails keeps it for the retry.

What is saved (`EpochBackup`): after every epoch, the weights of the model being fitted (with its
optimizer state, so the learning-rate schedule goes on where it was) and the epoch logs. As
Keras' BackupAndRestore, it restores neither the position in the dataset (a resumed epoch starts
on a freshly shuffled dataset) nor the augmenters' random-number generators (they start again
from their seeds).
"""

import hashlib
import json
import os
from typing import Any, Dict, List, Optional

import keras
import tensorflow as tf

from trainer import keras_fixes, log

LOG = log.get(__name__)

BACKUP_FOLDER = "backup"
METADATA_FILE = "backup.json"
KEY_LENGTH = 16


def backup_root(model_run_dir: str, examples_uri: str, custom_config: Dict[str, Any]) -> str:
    """The backup folder of a Trainer, the same for every retry of the same execution.

    Args:
      model_run_dir: this execution's ModelRun artifact folder, `<component folder>/model_run/<id>`.
      examples_uri: the Examples artifact folder the Trainer reads.
      custom_config: the Trainer's custom_config (JSON-serialisable).

    Returns:
      `<component folder>/backup/<16 hex digits of the SHA-256 of examples_uri and custom_config>`.
    """
    component_folder = os.path.dirname(os.path.dirname(model_run_dir.rstrip("/")))
    identity = json.dumps({"examples": examples_uri, "custom_config": custom_config}, sort_keys=True, default=str)
    key = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:KEY_LENGTH]
    return os.path.join(component_folder, BACKUP_FOLDER, key)


def remove_backup(backup_dir: str) -> None:
    """Deletes a completed run's backups, and the `backup` folder above them once it is empty."""
    if tf.io.gfile.exists(backup_dir):
        tf.io.gfile.rmtree(backup_dir)
    backups = os.path.dirname(backup_dir.rstrip("/"))
    if tf.io.gfile.isdir(backups) and not tf.io.gfile.listdir(backups):
        tf.io.gfile.rmtree(backups)


def _history_of(epoch_logs: List[Dict[str, float]]) -> Dict[str, List[float]]:
    """Per-epoch logs as Keras' History records them: one list per key, in epoch order."""
    history: Dict[str, List[float]] = {}
    for logs in epoch_logs:
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
    return history


class EpochBackup(keras.callbacks.Callback):
    """Backs up the model after every epoch of each `fit` and resumes an interrupted `fit` where it stopped.

    The k-th `fit` that uses this callback keeps its backup in `<folder>/<name>-fit-<k>`, so one
    instance can serve the successive fits of a training (the fine-tuning phases). A completed
    fit's backup is kept: when the Trainer is started again, that fit restores its final weights
    and runs no epoch, and the next fit resumes. `fit` returns the history of every epoch,
    including those run before the restart.

    The model must be built before `fit` (its weights are loaded in `on_train_begin`). Put this
    callback after the callbacks that add values to the epoch logs.

    The resumed fit starts at the restored epoch because this callback sets `model._initial_epoch` in
    `on_train_begin`, which Keras' `fit` reads after calling it: the private attribute Keras' own
    BackupAndRestore callback sets, for the same purpose. `fit(initial_epoch=...)` cannot replace it:
    the callback serves fits that do not know they resume (the k-th fit of a training, found only when it
    begins). It is fenced as the fixes of trainer/keras_fixes.py are: the Keras version is checked
    (KERAS_VERSIONS) before the attribute is set, and tests/test_keras_fixes.py checks that Keras still
    reads it.

    Args:
      restore_folder: the backups to restore: the chief's folder, the same on every worker.
      save_folder: where to write the backups: `restore_folder` on the chief, a temporary folder on
        other workers (every worker saves, as saving may run collective operations).
      name: what is trained, for the log ("pretraining") and the folder names.
    """

    def __init__(self, restore_folder: str, save_folder: str, name: str):
        super().__init__()
        self.restore_folder = restore_folder
        self.save_folder = save_folder
        self.name = name
        self.fit_count = 0
        self.epoch_logs: List[Dict[str, float]] = []

    def _fit_folder(self, root: str) -> str:
        return os.path.join(root, f"{self.name.replace(' ', '-')}-fit-{self.fit_count}")

    def _label(self) -> str:
        return self.name if self.fit_count == 1 else f"{self.name} (fit {self.fit_count})"

    def on_train_begin(self, logs=None):
        self.fit_count += 1
        self.epoch_logs = []
        # Keras keeps a restored start epoch on the model: clear the previous fit's.
        self.model._initial_epoch = None
        # `fit` returns `model.history`, which its History callback replaces only after an epoch.
        self.model.history = keras.callbacks.History()
        self.model.history.set_model(self.model)
        metadata = self._read_metadata()
        if metadata is None:
            return
        keras_fixes.check_keras_version()  # before the private attribute is set (see the class docstring)
        self._build_optimizer()
        self.model.load_weights(os.path.join(self._fit_folder(self.restore_folder), metadata["weights"]))
        self.model._initial_epoch = metadata["epoch"]
        self.epoch_logs = metadata["epoch_logs"]
        LOG.info(f"resuming {self._label()} at epoch {metadata['epoch']} "
                 f"({metadata['epoch']} epochs restored from {self._fit_folder(self.restore_folder)})")

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs.append({key: float(value) for key, value in (logs or {}).items()})
        folder = self._fit_folder(self.save_folder)
        tf.io.gfile.makedirs(folder)
        weights = f"epoch-{epoch + 1:04d}.weights.h5"
        self.model.save_weights(os.path.join(folder, weights))
        # The metadata file is the commit point: written whole, then renamed over the previous one.
        metadata = {"epoch": epoch + 1, "weights": weights, "epoch_logs": self.epoch_logs}
        metadata_path = os.path.join(folder, METADATA_FILE)
        with tf.io.gfile.GFile(metadata_path + ".tmp", "w") as handle:
            json.dump(metadata, handle)
        tf.io.gfile.rename(metadata_path + ".tmp", metadata_path, overwrite=True)
        for name in tf.io.gfile.listdir(folder):
            if name.endswith(".weights.h5") and name != weights:
                tf.io.gfile.remove(os.path.join(folder, name))

    def on_train_end(self, logs=None):
        self.model.history.history = _history_of(self.epoch_logs)
        self.model.history.epoch = list(range(len(self.epoch_logs)))

    def _read_metadata(self) -> Optional[Dict[str, Any]]:
        path = os.path.join(self._fit_folder(self.restore_folder), METADATA_FILE)
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path) as handle:
            return json.load(handle)

    def _build_optimizer(self) -> None:
        """Creates the optimizer's variables so that the saved optimizer state can be loaded into them."""
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            with self.model.distribute_strategy.scope():
                optimizer.build(self.model.trainable_variables)

