"""The TFX Trainer entry point for both Trainers: `run_fn(fn_args)`.

custom_config carries the `training:` config section plus `role`:
- "candidate": self-supervised pretraining of the encoder on the unlabeled and train images
  (the SSL loss uses no labels; an online linear probe on stop-gradient features reports how
  linearly separable the train labels are), then linear head + whole-network fine-tuning;
- "baseline": the same encoder architecture from random weights, trained on the train split
  only, with the same number of fine-tuning epochs.
Both export the same SavedModel signatures (trainer/export.py) and write `history.json`
beside the exported model (in the Model artifact) and TensorBoard logs in the ModelRun artifact.

Distribution (trainer/distribute.py): `training.batch_size` and `training.finetune_batch_size`
are global batches, split across the replicas by Keras. Only the chief writes the model, the
history and the TensorBoard logs; other workers write into a temporary folder that is removed.
Fault tolerance (trainer/checkpoints.py): every epoch is backed up in a folder that stays the
same across retries of the Trainer; a restarted Trainer resumes from the last completed epoch and
a completed one removes its backups. A NaN loss raises `monitors.NanLossError`: nothing is exported.
"""

import dataclasses
import json
import logging
import math
import os
import time
from typing import Any, Dict, List, Tuple

import keras
import tensorflow as tf

from trainer import checkpoints, data, distill, distribute, monitors
from trainer.augment import build_finetune_augmenter, build_pretrain_augmenter
from trainer.encoders import build_encoder, encoder_outputs_sequence
from trainer.export import export_classifier
from trainer.finetune import build_classifier, train_classifier
from trainer.hparams import ConfigError, TrainingConfig
from trainer.methods import build_method
from trainer.optimizers import build_optimizer

ROLES = ("candidate", "baseline")
HISTORY_FILE = "history.json"


# The keys the pipeline adds to custom_config beside the training: section: `role` and the trainer's code
# fingerprint (pipeline/pipeline.py), and the Vertex AI custom job of a multi-worker Trainer
# (kubeflow/runner.py; TFX's names in tfx.extensions.google_cloud_ai_platform, which the Vertex Trainer
# executor reads and passes on). tests/test_kubeflow.py and tests/test_pipeline_factory.py keep this true.
PIPELINE_CUSTOM_CONFIG_KEYS = ("role", "trainer_code_fingerprint", "ai_platform_enable_vertex",
                               "ai_platform_vertex_region", "ai_platform_training_args")


def training_config_from_custom_config(custom_config: Dict[str, Any]) -> TrainingConfig:
    """Rebuilds the validated TrainingConfig from the Trainer's custom_config.

    Raises:
      ConfigError: a key that is neither a training: setting nor one the pipeline adds
        (PIPELINE_CUSTOM_CONFIG_KEYS), e.g. a typo in a hand-edited Kubeflow runtime parameter; every
        such key is named, one per line.
    """
    names = [field.name for field in dataclasses.fields(TrainingConfig)]
    unknown = [key for key in custom_config if key not in names and key not in PIPELINE_CUSTOM_CONFIG_KEYS]
    if unknown:
        raise ConfigError("\n".join(
            f"config key 'custom_config.{key}': unknown key in the Trainer's custom_config; known keys are the "
            f"training: settings {names} and {list(PIPELINE_CUSTOM_CONFIG_KEYS)}"
            for key in unknown
        ))
    return TrainingConfig(**{key: value for key, value in custom_config.items() if key in names})


def _split_sizes(examples_uri: str) -> Dict[str, int]:
    with tf.io.gfile.GFile(os.path.join(examples_uri, "ingest_report.json")) as handle:
        report = json.load(handle)
    return {split: counts["written"] for split, counts in report["splits"].items()}


def pretrain(config: TrainingConfig, strategy: tf.distribute.Strategy, encoder: keras.Model, examples_uri: str,
             sizes: Dict[str, int], class_names: List[str], log_dir: str,
             backup: checkpoints.EpochBackup) -> Dict[str, list]:
    """Self-supervised pretraining of `encoder` in place; returns the per-epoch history."""
    if config.pretrain_epochs == 0:
        return {}
    files = data.split_files(examples_uri, "unlabeled") + data.split_files(examples_uri, "train")
    images = sizes["unlabeled"] + sizes["train"]
    if images < config.batch_size:
        raise ValueError(
            f"config key 'training.batch_size': {config.batch_size} is larger than the {images} images available "
            "for pretraining"
        )
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(
            f"config key 'training.batch_size': {config.batch_size} does not split evenly over the {replicas} "
            "replicas (every replica needs the same number of images); use a multiple of the replica count"
        )
    steps_per_epoch = images // config.batch_size
    is_sequence = encoder_outputs_sequence(config.encoder)
    with strategy.scope():
        augmenter = build_pretrain_augmenter(config.pretrain_augment, config.image_size, config.seed)
        model = build_method(
            config, encoder, augmenter, is_sequence,
            make_encoder=lambda: build_encoder(config.encoder, config.image_size, config.encoder_width,
                                               config.encoder_weights),
            steps_per_epoch=steps_per_epoch, num_classes=len(class_names),
        )
        model.compile(optimizer=build_optimizer(
            config.optimizer, config.pretrain_learning_rate, config.weight_decay,
            config.pretrain_epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch,
        ))
    # Labels come along (-1 for unlabeled images) for the online probe only; the SSL loss ignores them.
    dataset = distribute.shard_by_data(
        data.image_dataset(files, config.batch_size, config.image_size, config.seed, with_labels=True))

    def encode(batch):
        features = encoder(batch, training=False)
        return tf.reduce_mean(features, axis=1) if is_sequence else features

    labeled = {
        split: data.labeled_dataset(data.split_files(examples_uri, split), 256, config.image_size, config.seed, False)
        for split in ("train", "eval")
    }
    callbacks = [
        monitors.FailOnNanLoss(),
        monitors.KnnMonitor(encode, labeled["train"], labeled["eval"], config.knn_k, len(class_names),
                            config.monitor_every_epochs),
        monitors.CollapseMonitor(config.collapse_std_threshold, config.projection_dim),
        backup,
        keras.callbacks.TensorBoard(os.path.join(log_dir, "pretrain")),
    ]
    print(f"[selfsup] pretraining {config.method}: {config.pretrain_epochs} epochs x {steps_per_epoch} steps "
          f"of {config.batch_size} images ({images} images)", flush=True)
    history = model.fit(dataset, epochs=config.pretrain_epochs, callbacks=callbacks, verbose=2)
    return {f"pretrain/{key}": [float(value) for value in values] for key, values in history.history.items()}


def _train(role: str, config: TrainingConfig, strategy: tf.distribute.Strategy, examples_uri: str,
           class_names: List[str], log_dir: str, backup_dir: str, backup_save_dir: str,
           timings: Dict[str, float]) -> Tuple[keras.Model, Dict[str, list]]:
    """Pretraining (candidate), classifier training and distillation (candidate, `training.distill_epochs`);
    returns the classifier and the history.

    Records the seconds each stage took (in this execution) into `timings`.
    """
    sizes = _split_sizes(examples_uri)
    is_sequence = encoder_outputs_sequence(config.encoder)
    with strategy.scope():
        encoder = build_encoder(config.encoder, config.image_size, config.encoder_width, config.encoder_weights)

    history: Dict[str, list] = {}
    if role == "candidate":
        backup = checkpoints.EpochBackup(backup_dir, backup_save_dir, "pretraining")
        started = time.monotonic()
        history.update(pretrain(config, strategy, encoder, examples_uri, sizes, class_names, log_dir, backup))
        timings["pretrain_seconds"] = round(time.monotonic() - started, 1)

    train_dataset = data.labeled_dataset(data.split_files(examples_uri, "train"), config.finetune_batch_size,
                                         config.image_size, config.seed, shuffle=True)
    eval_dataset = data.labeled_dataset(data.split_files(examples_uri, "eval"), 256, config.image_size,
                                        config.seed, shuffle=False)
    steps_per_epoch = max(1, math.ceil(sizes["train"] / config.finetune_batch_size))
    callbacks = [
        monitors.FailOnNanLoss(),
        checkpoints.EpochBackup(backup_dir, backup_save_dir, "classifier training"),
        keras.callbacks.TensorBoard(os.path.join(log_dir, "finetune")),
    ]
    distilling = role == "candidate" and config.distill_epochs > 0
    encoder_weights_before_finetuning = distill.pretrained_encoder_weights(config, encoder) if distilling else None
    started = time.monotonic()
    with strategy.scope():
        classifier = build_classifier(encoder, len(class_names), config.image_size, is_sequence)
        augmenter = build_finetune_augmenter(config.finetune_augment, config.image_size, config.seed + 1)
        history.update(train_classifier(
            classifier, encoder, augmenter, distribute.shard_by_data(train_dataset),
            distribute.shard_by_data(eval_dataset), config, steps_per_epoch, callbacks,
            from_scratch=(role == "baseline"),
        ))
    timings["classifier_seconds"] = round(time.monotonic() - started, 1)
    if distilling:  # the fine-tuned classifier becomes the teacher; the student is the candidate
        started = time.monotonic()
        classifier, distill_history = distill.distill_classifier(
            config, strategy, classifier, encoder_weights_before_finetuning, examples_uri, sizes, log_dir,
            checkpoints.EpochBackup(backup_dir, backup_save_dir, "distillation"))
        history.update(distill_history)
        timings["distill_seconds"] = round(time.monotonic() - started, 1)
    return classifier, history


def train_and_export(custom_config: Dict[str, Any], train_files, serving_model_dir: str, log_dir: str,
                     backup_dir: str) -> Dict[str, list]:
    """Everything `run_fn` does, with plain arguments (used by tests and benchmarks too).

    Args:
      custom_config: the `training:` section as a dict, plus `role` ("candidate" or "baseline").
      train_files: the train split's file patterns (`<examples URI>/Split-train/*`).
      serving_model_dir: where the chief exports the SavedModel; `history.json` goes beside it.
      log_dir: where the chief writes the TensorBoard logs.
      backup_dir: the per-epoch backups, the same for every retry (see `checkpoints.backup_root`);
        removed when the run completes.

    Returns:
      The history of every training phase: `"<phase>/<metric>"` -> one value per epoch.

    Raises:
      ValueError: a bad role or config.
      monitors.NanLossError, monitors.RepresentationCollapseError: training failed; nothing is exported.
    """
    role = custom_config.get("role")
    if role not in ROLES:
        raise ValueError(f"custom_config 'role' must be one of {ROLES}, got {role!r}")
    config = training_config_from_custom_config(custom_config)
    strategy = distribute.build_strategy(config.strategy, config.tpu_address)
    keras.utils.set_random_seed(config.seed)
    examples_uri = data.examples_root(train_files)
    class_names = data.read_class_names(examples_uri)

    with distribute.writable_folders(serving_model_dir=serving_model_dir, log_dir=log_dir,
                                     backup_dir=backup_dir) as folders:
        timings: Dict[str, float] = {}
        classifier, history = _train(role, config, strategy, examples_uri, class_names, folders["log_dir"],
                                     backup_dir, folders["backup_dir"], timings)
        export_classifier(classifier, class_names, config.image_size, folders["serving_model_dir"])
        if distribute.is_chief():
            with tf.io.gfile.GFile(os.path.join(os.path.dirname(serving_model_dir), HISTORY_FILE), "w") as handle:
                json.dump({"role": role, "method": config.method, "class_names": class_names, "history": history,
                           "timings": timings}, handle, indent=1)
            print(f"[selfsup] {role} model exported to {serving_model_dir}", flush=True)
    # Every worker has restored its backups before the chief removes them.
    distribute.barrier(strategy)
    if distribute.is_chief():
        checkpoints.remove_backup(backup_dir)
    return history


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (GenericExecutor): see the module docstring."""
    backup_dir = checkpoints.backup_root(fn_args.model_run_dir, data.examples_root(fn_args.train_files),
                                         fn_args.custom_config)
    # Training with Keras sets the "absl" logger to WARNING, which would hide the orchestrator's
    # progress lines ("Component ... is running") for the rest of the run: put its level back.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    try:
        train_and_export(fn_args.custom_config, fn_args.train_files, fn_args.serving_model_dir,
                         fn_args.model_run_dir, backup_dir)
    finally:
        absl_logger.setLevel(level)
