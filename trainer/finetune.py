"""Classifier training: linear head on the frozen encoder, then the whole network; and the baseline.

The classifier maps images (B, H, W, 3) in [0, 1] to class probabilities (B, C). Sequence
encoders' (B, T, D) features are averaged over T before the head.

Each phase writes its TensorBoard logs into its own folder, named as its history keys' prefix:
`log_dir/linear` and `log_dir/finetune` (candidate), `log_dir/supervised` (baseline); each phase's
epochs count from 0, so in one folder a phase would overwrite the one before.
"""

import os
from typing import Dict, List, Optional, Tuple

import keras
import tensorflow as tf

from trainer import contract, keras_fixes, log, progress
from trainer.hparams import TrainingConfig
from trainer.optimizers import build_optimizer

LOG = log.get(__name__)


def build_classifier(encoder: keras.Model, num_classes: int, image_size: int, is_sequence: bool) -> keras.Model:
    """encoder -> (temporal average) -> feature normalisation -> Dense(num_classes, softmax), float32."""
    images = keras.Input((image_size, image_size, 3), name="images")
    features = encoder(images)
    if is_sequence:
        features = keras.layers.GlobalAveragePooling1D(name="temporal_average")(features)
    # Self-supervised losses fix the scale of the projections, not of the encoder features, which
    # can end up tiny; standardising each feature vector lets the head learn at an ordinary
    # learning rate. LayerNormalization keeps no running statistics, so training and serving
    # agree even after few steps. The baseline has the same layer, so the architectures match.
    # In float32 under a mixed policy too, so that the head sees the normalised features at full precision.
    features = keras.layers.LayerNormalization(center=False, scale=False, dtype="float32",
                                               name="feature_norm")(features)
    probabilities = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(features)
    return keras.Model(images, probabilities, name="classifier")


def build_classifier_optimizer(config: TrainingConfig, learning_rate: float,
                               total_steps: int) -> keras.optimizers.Optimizer:
    """The optimizer of every classifier phase: `training.optimizer` (Adam in place of LARS, which is
    for large-batch pretraining), cosine decay from `learning_rate` over `total_steps`, no warmup."""
    return build_optimizer("adam" if config.optimizer == "lars" else config.optimizer, learning_rate,
                           config.weight_decay, total_steps, 0)


def _fit_phase(training_model: keras.Model, train_dataset, eval_dataset, epochs: int, learning_rate: float,
               config: TrainingConfig, steps_per_epoch: int, callbacks: List, log_dir: str,
               phase: str, steps_per_epoch_of_fit: Optional[int] = None) -> Dict[str, List[float]]:
    if epochs == 0:
        return {}
    training_model.compile(
        optimizer=build_classifier_optimizer(config, learning_rate, epochs * steps_per_epoch),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    LOG.info(f"{phase}: {epochs} epochs at learning rate {learning_rate}")
    progress_callbacks, verbose = progress.fit_progress(phase)
    with keras_fixes.strategy_fixes(training_model.distribute_strategy):
        history = training_model.fit(
            train_dataset, validation_data=eval_dataset, epochs=epochs, steps_per_epoch=steps_per_epoch_of_fit,
            callbacks=callbacks + [keras.callbacks.TensorBoard(os.path.join(log_dir, phase))] + progress_callbacks,
            verbose=verbose)
    return {contract.history_key(phase, key): [float(value) for value in values]
            for key, values in history.history.items()}


def train_classifier(classifier: keras.Model, encoder: keras.Model, augmenter: keras.layers.Layer,
                     train_dataset: tf.data.Dataset, eval_dataset: tf.data.Dataset, config: TrainingConfig,
                     steps_per_epoch: int, callbacks: List, log_dir: str,
                     from_scratch: bool, matched: Tuple[int, int] = (0, 0)) -> Dict[str, List[float]]:
    """Trains `classifier` in place; returns the history of every phase.

    Candidate (from_scratch=False): `linear_epochs` with the encoder frozen at
    `linear_learning_rate`, then `finetune_epochs` of the whole network at `finetune_learning_rate`.
    Baseline (from_scratch=True): the same number of epochs (linear + finetune), whole network,
    at `baseline_learning_rate`, from random weights; then, when `matched` = (epochs, steps per epoch) is
    not (0, 0), the phase `matched` (contract.MATCHED_PHASE): that many more epochs of that many labeled
    batches (the labeled batches of the candidate's FixMatch and distillation stages,
    `semi_supervised.matched_labeled_batches`), with a new cosine schedule from `baseline_learning_rate`, as those
    stages start one.

    `callbacks` serve every phase; each phase adds a TensorBoard callback writing to `log_dir/<phase>`.
    """
    images = keras.Input(classifier.input_shape[1:], name="images")
    training_model = keras.Model(images, classifier(augmenter(images)), name="classifier_with_augmentation")
    history: Dict[str, List[float]] = {}
    if from_scratch:
        encoder.trainable = True
        history.update(_fit_phase(training_model, train_dataset, eval_dataset,
                                  config.linear_epochs + config.finetune_epochs, config.baseline_learning_rate,
                                  config, steps_per_epoch, callbacks, log_dir, contract.SUPERVISED_PHASE))
        matched_epochs, matched_steps = matched
        history.update(_fit_phase(training_model, train_dataset.repeat(), eval_dataset, matched_epochs,
                                  config.baseline_learning_rate, config, matched_steps, callbacks, log_dir,
                                  contract.MATCHED_PHASE, steps_per_epoch_of_fit=matched_steps))
        return history
    encoder.trainable = False
    history.update(_fit_phase(training_model, train_dataset, eval_dataset, config.linear_epochs,
                              config.linear_learning_rate, config, steps_per_epoch, callbacks, log_dir,
                              contract.LINEAR_PHASE))
    encoder.trainable = True
    history.update(_fit_phase(training_model, train_dataset, eval_dataset, config.finetune_epochs,
                              config.finetune_learning_rate, config, steps_per_epoch, callbacks, log_dir,
                              contract.FINETUNE_PHASE))
    return history
