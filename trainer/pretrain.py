"""Self-supervised pretraining of the encoder: the Pretrainer step (role "pretrainer" of trainer/run.py).

Pretraining reads the unlabeled and the train images without their labels (the labels ride along for
the online linear probe and the kNN monitor only, which never change the encoder), so the encoder is
the same for every label budget and every fine-tuning setting. It starts from random weights, from
`training.encoder_weights` (a weights file) or from `training.init_encoder` (an earlier encoder
artifact: continue pretraining on new data, or with `pretrain_epochs: 0` fine-tune it as it is).
"""

import os
import time
from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf

from trainer import checkpoints, data, distribute, keras_fixes, log, monitors, progress
from trainer.augment import build_pretrain_augmenter
from trainer.contract import EVAL_SPLIT, PRETRAIN_PHASE, TRAIN_SPLIT, UNLABELED_SPLIT, history_key
from trainer.encoder_artifact import load_encoder
from trainer.encoders import build_encoder, encoder_outputs_sequence
from trainer.examples import TrainingExamples
from trainer.hparams import TrainingConfig
from trainer.methods import build_method
from trainer.optimizers import build_optimizer

LOG = log.get(__name__)

AUGMENTED_VIEW_ROWS = 6  # images shown with their two views in augmented_views.png


def initial_encoder(config: TrainingConfig) -> keras.Model:
    """The encoder pretraining starts from (call inside the strategy's scope)."""
    if config.init_encoder:
        return load_encoder(config.init_encoder, config, "training.init_encoder")
    return build_encoder(config.encoder, config.image_size, config.encoder_width, config.encoder_weights)


def pretrain_encoder(
    config: TrainingConfig, strategy: tf.distribute.Strategy, examples: TrainingExamples, log_dir: str,
    backup: checkpoints.EpochBackup,
) -> Tuple[keras.Model, Dict[str, list], Dict[str, float]]:
    """Builds (or loads) the encoder and pretrains it; returns it, the history and the seconds it took."""
    with strategy.scope():
        encoder = initial_encoder(config)
    started = time.monotonic()
    history = pretrain(config, strategy, encoder, examples, log_dir, backup)
    return encoder, history, {"pretrain_seconds": round(time.monotonic() - started, 1)}


def pretrain(config: TrainingConfig, strategy: tf.distribute.Strategy, encoder: keras.Model,
             examples: TrainingExamples, log_dir: str, backup: checkpoints.EpochBackup) -> Dict[str, list]:
    """Self-supervised pretraining of `encoder` in place on the unlabeled and train splits of `examples`;
    returns the per-epoch history."""
    if config.pretrain_epochs == 0:
        return {}
    images = examples.sizes[UNLABELED_SPLIT] + examples.sizes[TRAIN_SPLIT]
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
            steps_per_epoch=steps_per_epoch, num_classes=len(examples.class_names),
        )
        model.compile(optimizer=build_optimizer(
            config.optimizer, config.pretrain_learning_rate, config.weight_decay,
            config.pretrain_epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch,
        ))
    # Labels come along (-1 for unlabeled images) for the online probe only; the SSL loss ignores them.
    cache = data.DecodeCache.from_config(config)
    dataset = distribute.shard_by_data(
        data.image_dataset(examples.unlabeled_and_train_files, config.batch_size, config.image_size, config.seed,
                           with_labels=True, keys=examples.keys, cache=cache, images=images,
                           name="unlabeled and train images"))

    def encode(batch):
        features = encoder(batch, training=False)
        return tf.reduce_mean(features, axis=1) if is_sequence else features

    labeled = {
        role: data.labeled_dataset(examples.files[role], 256, config.image_size, config.seed, False, keys=examples.keys,
                                   cache=cache, images=examples.sizes[role], name=f"{role} images (kNN monitor)")
        for role in (TRAIN_SPLIT, EVAL_SPLIT)
    }
    callbacks = [
        monitors.FailOnNanLoss(),
        monitors.KnnMonitor(encode, labeled[TRAIN_SPLIT], labeled[EVAL_SPLIT], config.knn_k, len(examples.class_names),
                            config.monitor_every_epochs),
        monitors.CollapseMonitor(config.collapse_std_threshold, config.projection_dim),
        backup,
        keras.callbacks.TensorBoard(os.path.join(log_dir, PRETRAIN_PHASE)),
    ]
    LOG.info(f"pretraining {config.method}: {config.pretrain_epochs} epochs x {steps_per_epoch} steps "
             f"of {config.batch_size} images ({images} images)")
    progress_callbacks, verbose = progress.fit_progress(PRETRAIN_PHASE)
    with keras_fixes.strategy_fixes(strategy):
        history = model.fit(dataset, epochs=config.pretrain_epochs, callbacks=callbacks + progress_callbacks,
                            verbose=verbose)
    return {history_key(PRETRAIN_PHASE, key): [float(value) for value in values]
            for key, values in history.history.items()}


def augmented_views_grid(config: TrainingConfig, examples: TrainingExamples,
                         rows: int = AUGMENTED_VIEW_ROWS) -> Optional[tf.Tensor]:
    """The first `rows` unlabeled/train images (file order) beside their two views from the pretraining
    augmenter (`training.pretrain_augment`, seeded with `training.seed`, training=True), for a look at what
    pretraining sees.

    Returns:
      (rows * image_size, 3 * image_size, 3) uint8: per row, the image as decoded, its first view and its
      second; fewer rows when there are fewer images; None when nothing is pretrained (pretrain_epochs 0).
    """
    if config.pretrain_epochs == 0:
        return None
    rows = min(rows, examples.sizes[UNLABELED_SPLIT] + examples.sizes[TRAIN_SPLIT])
    dataset = data.image_dataset(examples.unlabeled_and_train_files, rows, config.image_size, config.seed,
                                 shuffle=False, keys=examples.keys)
    images = next(iter(dataset))
    augmenter = build_pretrain_augmenter(config.pretrain_augment, config.image_size, config.seed)
    # (rows, 3 columns, H, W, 3) -> (rows, H, 3 columns, W, 3): each row of pixels runs across the 3 columns.
    columns = tf.stack([images, augmenter(images, training=True), augmenter(images, training=True)], axis=1)
    grid = tf.reshape(tf.transpose(columns, [0, 2, 1, 3, 4]), [rows * config.image_size, 3 * config.image_size, 3])
    return tf.image.convert_image_dtype(tf.clip_by_value(grid, 0.0, 1.0), tf.uint8, saturate=True)
