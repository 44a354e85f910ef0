"""The TFX Trainer entry point of the Pretrainer and both classifier Trainers: `run_fn(fn_args)`.

custom_config carries the `training:` config section (the Pretrainer: only the settings pretraining
reads, `TrainingConfig.pretraining_dict`) plus `role`:
- "pretrainer": self-supervised pretraining of the encoder on the unlabeled and train images
  (trainer/pretrain.py); exports the encoder artifact (trainer/encoder_artifact.py);
- "candidate": the Pretrainer's encoder (the Trainer's `base_model`), then linear head +
  whole-network fine-tuning on the labeled train images (at most `training.labels_per_class` per
  class), then FixMatch on the unlabeled images when `training.fixmatch_epochs` > 0 (trainer/fixmatch.py),
  then distillation when `training.distill_epochs` > 0 (trainer/distill.py);
- "baseline": the same encoder architecture from random weights, trained on the same labeled
  images, with as many epochs as the candidate's linear + fine-tuning phases, then as many more labeled
  batches as the candidate's FixMatch and distillation stages train on (finetune.train_classifier `matched`,
  semi_supervised.matched_labeled_batches).
Both classifiers export the same SavedModel signatures (trainer/export.py) and write `history.json`
beside the exported model (in the Model artifact) and TensorBoard logs in the ModelRun artifact, one
folder per training phase, named as the phase's history keys (`linear/`, `finetune/`, `distill/`, ...).

What the Trainers read (trainer/examples.py): the `train_args` and `eval_args` splits of any Examples artifact
of tf.Examples with an encoded image and an int64 label (feature keys `training.image_feature`,
`training.label_feature`), and for pretraining, FixMatch and distillation also the unlabeled splits
(`training.unlabeled_splits`; unset, ImageExampleGen's `unlabeled` when there is one, else the train splits only).
The class names and split sizes come from ImageExampleGen's `class_names.json` and `ingest_report.json`; for
other ExampleGens (ImportExampleGen) from `training.class_names` (or the largest label) and a count of the splits.

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
from typing import Any, Dict, Optional, Tuple

import keras
import tensorflow as tf

from trainer import checkpoints, data, distill, distribute, fixmatch, log, monitors, precision, semi_supervised
from trainer.augment import build_finetune_augmenter
from trainer.contract import (
    BASELINE_ROLE,
    CANDIDATE_ROLE,
    EVAL_SPLIT,
    HISTORY_CURVES_KEY,
    HISTORY_FILE,
    HISTORY_LABELED_TRAIN_IMAGES_KEY,
    HISTORY_SETTINGS_KEY,
    HISTORY_TIMINGS_KEY,
    PRETRAINER_ROLE,
    ROLES,
    TRAIN_SPLIT,
    UNLABELED_SPLIT,
)
from trainer.encoder_artifact import describe, load_encoder, save_encoder, weights_digest
from trainer.encoders import build_encoder, encoder_outputs_sequence
from trainer.examples import TrainingExamples, read_training_examples
from trainer.export import export_classifier
from trainer.finetune import build_classifier, train_classifier
from trainer.hparams import ConfigError, TrainingConfig
from trainer.pretrain import augmented_views_grid, pretrain_encoder

LOG = log.get(__name__)


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


def custom_config_of(config: TrainingConfig, role: str) -> Dict[str, Any]:
    """The settings this Trainer reads (what its history.json records, and the report shows)."""
    if role == PRETRAINER_ROLE:
        return config.pretraining_dict()
    return config.baseline_dict() if role == BASELINE_ROLE else config.to_dict()


def _train(role: str, config: TrainingConfig, strategy: tf.distribute.Strategy, examples: TrainingExamples,
           log_dir: str, backup_dir: str, backup_save_dir: str,
           base_model: Optional[str]) -> Tuple[keras.Model, Dict[str, Any]]:
    """Classifier training (candidate: from the encoder at `base_model`; baseline: from random weights, then
    its `matched` labeled batches), then the candidate's FixMatch (`training.fixmatch_epochs`) and
    distillation (`training.distill_epochs`); returns the classifier and {"history", "timings", "encoder",
    "labeled_train_images"} (the baseline's also "matched_labeled_batches") for history.json."""
    sizes = examples.sizes
    is_sequence = encoder_outputs_sequence(config.encoder)
    encoder_record = None
    with strategy.scope():
        if role == CANDIDATE_ROLE:
            if not base_model:
                raise ValueError("the candidate Trainer needs the Pretrainer's encoder as its base_model")
            encoder = load_encoder(base_model, config, "training.encoder")
            encoder_record = {"base_model": base_model, "weights_digest": weights_digest(encoder)}
        else:
            encoder = build_encoder(config.encoder, config.image_size, config.encoder_width, config.encoder_weights)

    keep_paths = (data.label_budget_paths(examples.files[TRAIN_SPLIT], config.labels_per_class, examples.keys)
                  if config.labels_per_class is not None else None)
    train_images = len(keep_paths) if keep_paths is not None else sizes[TRAIN_SPLIT]
    if config.labels_per_class is not None:
        LOG.info(f"label budget: {train_images} of {sizes[TRAIN_SPLIT]} train images "
                 f"(at most {config.labels_per_class} per class)")
    cache = data.DecodeCache.from_config(config)
    train_dataset = data.labeled_dataset(examples.files[TRAIN_SPLIT], config.finetune_batch_size, config.image_size,
                                         config.seed, shuffle=True, keep_paths=keep_paths, keys=examples.keys,
                                         cache=cache, images=train_images, name="labeled train images")
    eval_dataset = data.labeled_dataset(examples.files[EVAL_SPLIT], 256, config.image_size, config.seed, shuffle=False,
                                        keys=examples.keys, cache=cache, images=sizes[EVAL_SPLIT],
                                        name="eval images")
    steps_per_epoch = max(1, math.ceil(train_images / config.finetune_batch_size))
    # The candidate's semi-supervised stages train on labeled batches too: the baseline gets as many more.
    matched = semi_supervised.matched_labeled_batches(config, sizes) if role == BASELINE_ROLE else (0, 0)
    if matched[0]:
        LOG.info(f"baseline: {matched[0]} more epochs of {matched[1]} labeled batches, as many as the "
                 "candidate's FixMatch and distillation stages train on")
    callbacks = [
        monitors.FailOnNanLoss(),
        checkpoints.EpochBackup(backup_dir, backup_save_dir, "classifier training"),
    ]
    history: Dict[str, list] = {}
    timings: Dict[str, float] = {}
    distilling = role == CANDIDATE_ROLE and config.distill_epochs > 0
    encoder_weights_before_finetuning = distill.pretrained_encoder_weights(config, encoder) if distilling else None
    started = time.monotonic()
    with strategy.scope():
        classifier = build_classifier(encoder, len(examples.class_names), config.image_size, is_sequence)
        augmenter = build_finetune_augmenter(config.finetune_augment, config.image_size, config.seed + 1)
        history.update(train_classifier(
            classifier, encoder, augmenter, distribute.shard_by_data(train_dataset),
            distribute.shard_by_data(eval_dataset), config, steps_per_epoch, callbacks, log_dir,
            from_scratch=(role == BASELINE_ROLE), matched=matched,
        ))
    timings["classifier_seconds"] = round(time.monotonic() - started, 1)
    if role == CANDIDATE_ROLE and config.fixmatch_epochs > 0:
        started = time.monotonic()
        history.update(fixmatch.fixmatch_classifier(
            config, strategy, classifier, examples, log_dir,
            checkpoints.EpochBackup(backup_dir, backup_save_dir, "fixmatch"), keep_paths=keep_paths))
        timings["fixmatch_seconds"] = round(time.monotonic() - started, 1)
    if distilling:  # the fine-tuned classifier becomes the teacher; the student is the candidate
        started = time.monotonic()
        classifier, distill_history = distill.distill_classifier(
            config, strategy, classifier, encoder_weights_before_finetuning, examples, log_dir,
            checkpoints.EpochBackup(backup_dir, backup_save_dir, "distillation"), keep_paths=keep_paths)
        history.update(distill_history)
        timings["distill_seconds"] = round(time.monotonic() - started, 1)
    record = {HISTORY_CURVES_KEY: history, HISTORY_TIMINGS_KEY: timings, "encoder": encoder_record,
              HISTORY_LABELED_TRAIN_IMAGES_KEY: train_images}
    if role == BASELINE_ROLE:
        record["matched_labeled_batches"] = {"epochs": matched[0], "steps_per_epoch": matched[1]}
    return classifier, record


def train_and_export(custom_config: Dict[str, Any], train_files, serving_model_dir: str, log_dir: str,
                     backup_dir: str, base_model: Optional[str] = None, eval_files=None) -> Dict[str, list]:
    """Everything `run_fn` does, with plain arguments (used by tests and benchmarks too).

    It trains under the Keras dtype policy `training.precision` chooses (trainer/precision.py), says which
    and why, records it in history.json (`precision`: `policy`, `setting`, `reason`) and puts the previous
    global policy back when it returns or fails.

    Args:
      custom_config: the `training:` section as a dict, plus `role` ("pretrainer", "candidate" or "baseline").
      train_files: the train splits' file patterns (`<examples URI>/Split-train/*`).
      serving_model_dir: where the chief exports the SavedModel; `history.json` (and the Pretrainer's
        encoder files) go beside it.
      log_dir: where the chief writes the TensorBoard logs.
      backup_dir: the per-epoch backups, the same for every retry (see `checkpoints.backup_root`);
        removed when the run completes.
      base_model: the candidate's encoder (the Pretrainer's Model artifact or its Format-Serving folder).
      eval_files: the eval splits' file patterns; None: the `eval` split beside the train files.

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
    # Before any model is built: layers take the global policy when they are created.
    policy, reason = precision.precision_for_this_machine(config.precision, strategy)
    LOG.info(f"precision: {policy} ({reason})")
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        return _train_and_export(role, config, strategy, {"policy": policy, "setting": config.precision,
                                                          "reason": reason},
                                 train_files, eval_files, serving_model_dir, log_dir, backup_dir, base_model)
    finally:  # so that one process's Trainers (and tests) do not leak the policy into each other
        keras.mixed_precision.set_global_policy(previous_policy)


def _train_and_export(role: str, config: TrainingConfig, strategy: tf.distribute.Strategy,
                      precision_record: Dict[str, str], train_files, eval_files, serving_model_dir: str,
                      log_dir: str, backup_dir: str, base_model: Optional[str]) -> Dict[str, list]:
    keras.utils.set_random_seed(config.seed)
    if eval_files is None:
        eval_files = data.split_files(data.examples_root(train_files), EVAL_SPLIT)
    examples = read_training_examples(train_files, eval_files, config)
    class_names = examples.class_names

    with distribute.writable_folders(serving_model_dir=serving_model_dir, log_dir=log_dir, backup_dir=backup_dir,
                                     artifact_dir=os.path.dirname(serving_model_dir)) as folders:
        if role == PRETRAINER_ROLE:
            backup = checkpoints.EpochBackup(backup_dir, folders["backup_dir"], "pretraining")
            encoder, history, timings = pretrain_encoder(config, strategy, examples, folders["log_dir"], backup)
            record = {"role": role, "method": config.method, "class_names": class_names, HISTORY_CURVES_KEY: history,
                      HISTORY_TIMINGS_KEY: timings, "precision": precision_record,
                      HISTORY_SETTINGS_KEY: dict(custom_config_of(config, role))}
            pretraining_images = examples.sizes[UNLABELED_SPLIT] + examples.sizes[TRAIN_SPLIT]
            save_encoder(encoder, describe(config, examples.uri, pretraining_images, config.init_encoder),
                         record, folders["artifact_dir"], folders["serving_model_dir"],
                         encoder_outputs_sequence(config.encoder), augmented_views_grid(config, examples))
        else:
            classifier, record = _train(role, config, strategy, examples, folders["log_dir"], backup_dir,
                                        folders["backup_dir"], base_model)
            history = record[HISTORY_CURVES_KEY]
            export_classifier(classifier, class_names, config.image_size, folders["serving_model_dir"],
                              image_feature=examples.keys.image)
            tf.io.gfile.makedirs(folders["artifact_dir"])  # a non-chief worker's scratch folder is not made yet
            with tf.io.gfile.GFile(os.path.join(folders["artifact_dir"], HISTORY_FILE), "w") as handle:
                json.dump({**record, "role": role, "method": config.method, "class_names": class_names,
                           "precision": precision_record, HISTORY_SETTINGS_KEY: custom_config_of(config, role)},
                          handle, indent=1)
        if distribute.is_chief():
            LOG.info(f"{role} model exported to {serving_model_dir}")
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
                         fn_args.model_run_dir, backup_dir, base_model=fn_args.base_model,
                         eval_files=fn_args.eval_files)
    finally:
        absl_logger.setLevel(level)
