"""What the candidate's semi-supervised stages share: FixMatch (trainer/fixmatch.py) and distillation
(trainer/distill.py) train a classifier on a batch of unlabeled and a batch of labeled images per step.

`SemiSupervisedModel` is their Keras model's skeleton. Batches are `(unlabeled_images (U, H, W, 3),
(labeled_images (L, H, W, 3), labels (L,)))` in training and `(images, labels)` in evaluation. Each step
makes the views of both batches and the unlabeled images' targets (a subclass's `views_and_targets`), passes
both batches through the trained classifier at once (so batch norm sees them together) and minimises

    loss = labeled_weight * mean cross-entropy over the labeled batch
           + unlabeled_weight * sum of the subclass's `unlabeled_losses` / unlabeled batch size

Under a tf.distribute strategy each replica's share is its sum over the global batch
(`tf.nn.compute_average_loss`), because Keras sums gradients across replicas. The metrics are `loss`,
`labeled_loss`, the unlabeled loss (named by the subclass), `accuracy` (labeled batch) and one more of the
subclass's (`extra_metric`); on the eval split `val_loss` (cross-entropy) and `val_accuracy`.

`fit_stage` is the stages' shared fit: their batches, eval split, callbacks, log line and history.
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from trainer import checkpoints, data, distribute, keras_fixes, log, monitors, progress
from trainer.contract import EVAL_SPLIT, TRAIN_SPLIT, UNLABELED_SPLIT, history_key
from trainer.examples import TrainingExamples
from trainer.hparams import TrainingConfig

LOG = log.get(__name__)
EVAL_BATCH_SIZE = 256


class SemiSupervisedModel(keras.Model):
    """The skeleton of FixMatch and Distillation (see the module docstring).

    A subclass calls `__init__` first, then sets its models, and defines `trained` (the classifier whose
    weights the step changes), `views_and_targets`, `unlabeled_losses` and `extra_metric`.

    Args:
      labeled_weight, unlabeled_weight: the weights of the two terms of the loss.
      unlabeled_batch_size, labeled_batch_size: the global batch sizes (every batch is full).
      unlabeled_loss_name: the unlabeled term's metric name ("unlabeled_loss", "distillation_loss").
      extra_metric_name: the subclass's metric ("confident_fraction", "teacher_agreement").
      unlabeled_loss_first: whether the unlabeled loss comes before `labeled_loss` among the metrics.
    """

    def __init__(self, labeled_weight: float, unlabeled_weight: float, unlabeled_batch_size: int,
                 labeled_batch_size: int, unlabeled_loss_name: str, extra_metric_name: str,
                 unlabeled_loss_first: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.labeled_weight = labeled_weight
        self.unlabeled_weight = unlabeled_weight
        self.unlabeled_batch_size = unlabeled_batch_size
        self.labeled_batch_size = labeled_batch_size
        self.unlabeled_loss_first = unlabeled_loss_first
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.labeled_loss_tracker = keras.metrics.Mean(name="labeled_loss")
        self.unlabeled_loss_tracker = keras.metrics.Mean(name=unlabeled_loss_name)
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.extra_tracker = keras.metrics.Mean(name=extra_metric_name)
        # The subclass's models are built already; this model has no `call` to build it from.
        self.built = True

    @property
    def metrics(self):
        losses = [self.labeled_loss_tracker, self.unlabeled_loss_tracker]
        if self.unlabeled_loss_first:
            losses.reverse()
        return [self.loss_tracker, *losses, self.accuracy_tracker, self.extra_tracker]

    @property
    def trained(self) -> keras.Model:
        """The classifier being trained: images -> (B, C) float32 probabilities."""
        raise NotImplementedError

    def views_and_targets(self, unlabeled_images: tf.Tensor, labeled_images: tf.Tensor):
        """(unlabeled views, labeled views, the unlabeled images' targets), outside the gradient tape."""
        raise NotImplementedError

    def unlabeled_losses(self, targets, unlabeled_probabilities: tf.Tensor) -> tf.Tensor:
        """(U,) float32: each unlabeled image's loss against its target."""
        raise NotImplementedError

    def extra_metric(self, targets, unlabeled_probabilities: tf.Tensor) -> tf.Tensor:
        """The value the subclass's metric averages this step."""
        raise NotImplementedError

    def train_step(self, batch):
        unlabeled_images, (labeled_images, labels) = batch
        unlabeled_views, labeled_views, targets = self.views_and_targets(unlabeled_images, labeled_images)
        unlabeled_count = tf.shape(unlabeled_views)[0]
        with tf.GradientTape() as tape:
            # One pass over both batches, so batch norm sees them together. The classifiers end in a float32
            # softmax (finetune.build_classifier); the casts keep the losses float32 whatever the policy.
            probabilities = tf.cast(
                self.trained(tf.concat([unlabeled_views, labeled_views], axis=0), training=True), tf.float32)
            unlabeled_probabilities = probabilities[:unlabeled_count]
            labeled_probabilities = probabilities[unlabeled_count:]
            unlabeled_losses = self.unlabeled_losses(targets, unlabeled_probabilities)
            labeled_losses = keras.losses.sparse_categorical_crossentropy(labels, labeled_probabilities)
            replica_loss = (
                self.labeled_weight
                * tf.nn.compute_average_loss(labeled_losses, global_batch_size=self.labeled_batch_size)
                + self.unlabeled_weight
                * tf.nn.compute_average_loss(unlabeled_losses, global_batch_size=self.unlabeled_batch_size)
            )
            # The LossScaleOptimizer of mixed_float16 scales the loss (and unscales the gradients); others
            # return it as it is.
            scaled_loss = self.optimizer.scale_loss(replica_loss)
        variables = self.trained.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))
        labeled_loss = tf.reduce_mean(labeled_losses)
        unlabeled_loss = tf.reduce_mean(unlabeled_losses)
        self.loss_tracker.update_state(self.labeled_weight * labeled_loss + self.unlabeled_weight * unlabeled_loss)
        self.labeled_loss_tracker.update_state(labeled_loss)
        self.unlabeled_loss_tracker.update_state(unlabeled_loss)
        self.accuracy_tracker.update_state(labels, labeled_probabilities)
        self.extra_tracker.update_state(self.extra_metric(targets, unlabeled_probabilities))
        return {metric.name: metric.result() for metric in self.metrics}

    def test_step(self, batch):
        images, labels = batch
        probabilities = tf.cast(self.trained(images, training=False), tf.float32)
        self.labeled_loss_tracker.update_state(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
        self.accuracy_tracker.update_state(labels, probabilities)
        return {"loss": self.labeled_loss_tracker.result(), "accuracy": self.accuracy_tracker.result()}


def matched_labeled_batches(config: TrainingConfig, sizes: Dict[str, int]) -> Tuple[int, int]:
    """(epochs, labeled batches per epoch) of the candidate's semi-supervised stages (FixMatch and
    distillation): one labeled batch of `training.finetune_batch_size` per step, `data.semi_supervised_steps`
    steps per epoch; (0, 0) without those stages. The baseline trains on as many (trainer/finetune.py)."""
    epochs = config.fixmatch_epochs + config.distill_epochs
    return (epochs, data.semi_supervised_steps(sizes, config.batch_size)) if epochs else (0, 0)


def fit_stage(model: SemiSupervisedModel, phase: str, epochs: int, config: TrainingConfig, strategy,
              examples: TrainingExamples, seed: int, keep_paths: Optional[Sequence[bytes]], log_dir: str,
              backup: checkpoints.EpochBackup, description: str) -> Dict[str, List[float]]:
    """Fits the compiled `model` for `epochs` on the stage's batches (data.unlabeled_and_labeled_batches), with
    the eval split as validation data, TensorBoard logs in `log_dir/<phase>`, the backup and the progress of
    `phase`; logs "<description>" first.

    Returns:
      `<phase>/<metric>` -> one value per epoch.
    """
    cache = data.DecodeCache.from_config(config)
    sizes = examples.sizes
    labeled_images = len(keep_paths) if keep_paths is not None else sizes[TRAIN_SPLIT]
    batches = data.unlabeled_and_labeled_batches(examples.unlabeled_and_train_files, examples.files[TRAIN_SPLIT],
                                                 config.batch_size, config.finetune_batch_size, config.image_size,
                                                 seed, keep_paths, examples.keys, cache=cache,
                                                 sizes=(sizes[UNLABELED_SPLIT] + sizes[TRAIN_SPLIT], labeled_images))
    eval_dataset = data.labeled_dataset(examples.files[EVAL_SPLIT], EVAL_BATCH_SIZE, config.image_size, seed,
                                        shuffle=False, keys=examples.keys, cache=cache, images=sizes[EVAL_SPLIT],
                                        name="eval images")
    callbacks = [monitors.FailOnNanLoss(), backup, keras.callbacks.TensorBoard(os.path.join(log_dir, phase))]
    LOG.info(description)
    progress_callbacks, verbose = progress.fit_progress(phase)
    with keras_fixes.strategy_fixes(strategy):
        history = model.fit(distribute.shard_by_data(batches),
                            validation_data=distribute.shard_by_data(eval_dataset), epochs=epochs,
                            callbacks=callbacks + progress_callbacks, verbose=verbose)
    return {history_key(phase, key): [float(value) for value in values] for key, values in history.history.items()}
