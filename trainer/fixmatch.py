"""Semi-supervised fine-tuning on the unlabeled images with confident pseudo-labels (FixMatch, Sohn et al. 2020).

A stage of the candidate's training, after the linear head and the whole-network fine-tuning and
before distillation: the fine-tuned classifier goes on training on the labeled images and, at the
same time, on the unlabeled (and train) images. Each step takes a batch of `training.batch_size`
unlabeled images and a batch of `training.finetune_batch_size` labeled ones:

- a weak view of each unlabeled image (`training.finetune_augment`, the fine-tuning augmentation) is
  classified without gradient; where the most likely class has probability >= `fixmatch_threshold`,
  that class is the image's pseudo-label, otherwise the image is left out of the loss;
- a strong view of the same image (the pretraining augmentation preset "strong" with
  `training.fixmatch_augment` overrides) is trained to predict that pseudo-label;
- the labeled images (weak views) are trained on their labels:

    loss = mean cross-entropy over the labeled batch
           + fixmatch_unlabeled_weight * sum over confident images of cross-entropy(pseudo-label, strong view)
             / unlabeled batch size

As in FixMatch the unlabeled term is divided by the whole unlabeled batch, not by the confident
images, so it grows as the classifier becomes confident. Under a tf.distribute strategy each
replica's share is its sum over the global batch (`tf.nn.compute_average_loss`), because Keras sums
gradients across replicas. The history (`fixmatch/...`) has `loss`, `labeled_loss`, `unlabeled_loss`,
`accuracy` (labeled batch), `confident_fraction` (share of unlabeled images with a pseudo-label) and,
on the eval split, `val_loss` (cross-entropy) and `val_accuracy`.
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from trainer import checkpoints, data, distribute, monitors, progress
from trainer.augment import build_augmenter, build_finetune_augmenter, view_maker
from trainer.examples import EVAL, TRAIN, TrainingExamples
from trainer.finetune import build_classifier_optimizer
from trainer.hparams import TrainingConfig, augment_settings

PHASE = "fixmatch"


class FixMatch(keras.Model):
    """Trains `classifier` on labels plus its own confident predictions (see the module docstring).

    Batches are `(unlabeled_images (U, H, W, 3), (labeled_images (L, H, W, 3), labels (L,)))` in
    training and `(images, labels)` in evaluation.

    Args:
      classifier: images -> (B, C) probabilities; trained in place.
      weak_augmenter, strong_augmenter: the two views, applied inside the step.
      threshold: `training.fixmatch_threshold`.
      unlabeled_weight: `training.fixmatch_unlabeled_weight`.
      unlabeled_batch_size, labeled_batch_size: the global batch sizes (every batch is full).
      jit_compile_augmentation: `training.augment_jit_compile` (trainer/augment.py view_maker).
    """

    def __init__(self, classifier: keras.Model, weak_augmenter: keras.layers.Layer,
                 strong_augmenter: keras.layers.Layer, threshold: float, unlabeled_weight: float,
                 unlabeled_batch_size: int, labeled_batch_size: int, jit_compile_augmentation: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.weak_augmenter = weak_augmenter
        self.strong_augmenter = strong_augmenter
        self.weak_views = view_maker(weak_augmenter, jit_compile_augmentation)
        self.strong_views = view_maker(strong_augmenter, jit_compile_augmentation)
        self.threshold = threshold
        self.unlabeled_weight = unlabeled_weight
        self.unlabeled_batch_size = unlabeled_batch_size
        self.labeled_batch_size = labeled_batch_size
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.labeled_loss_tracker = keras.metrics.Mean(name="labeled_loss")
        self.unlabeled_loss_tracker = keras.metrics.Mean(name="unlabeled_loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.confident_tracker = keras.metrics.Mean(name="confident_fraction")
        # The classifier and the augmenters are built already; this model has no `call` to build it from.
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.labeled_loss_tracker, self.unlabeled_loss_tracker, self.accuracy_tracker,
                self.confident_tracker]

    def train_step(self, batch):
        unlabeled_images, (labeled_images, labels) = batch
        weak_views = self.weak_views(unlabeled_images)
        strong_views = self.strong_views(unlabeled_images)
        labeled_views = self.weak_views(labeled_images)
        # The classifier ends in a float32 softmax (finetune.build_classifier); the casts keep the losses
        # float32 whatever the policy.
        guesses = tf.stop_gradient(tf.cast(self.classifier(weak_views, training=False), tf.float32))
        pseudo_labels = tf.argmax(guesses, axis=-1)
        confident = tf.cast(tf.reduce_max(guesses, axis=-1) >= self.threshold, tf.float32)
        unlabeled_count = tf.shape(strong_views)[0]
        with tf.GradientTape() as tape:
            # One pass over both batches, so batch norm sees them together.
            probabilities = tf.cast(
                self.classifier(tf.concat([strong_views, labeled_views], axis=0), training=True), tf.float32)
            strong_probabilities = probabilities[:unlabeled_count]
            labeled_probabilities = probabilities[unlabeled_count:]
            unlabeled_losses = confident * keras.losses.sparse_categorical_crossentropy(pseudo_labels,
                                                                                         strong_probabilities)
            labeled_losses = keras.losses.sparse_categorical_crossentropy(labels, labeled_probabilities)
            replica_loss = (
                tf.nn.compute_average_loss(labeled_losses, global_batch_size=self.labeled_batch_size)
                + self.unlabeled_weight
                * tf.nn.compute_average_loss(unlabeled_losses, global_batch_size=self.unlabeled_batch_size)
            )
            # The LossScaleOptimizer of mixed_float16 scales the loss (and unscales the gradients); others
            # return it as it is.
            scaled_loss = self.optimizer.scale_loss(replica_loss)
        variables = self.classifier.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))
        labeled_loss = tf.reduce_mean(labeled_losses)
        unlabeled_loss = tf.reduce_mean(unlabeled_losses)
        self.loss_tracker.update_state(labeled_loss + self.unlabeled_weight * unlabeled_loss)
        self.labeled_loss_tracker.update_state(labeled_loss)
        self.unlabeled_loss_tracker.update_state(unlabeled_loss)
        self.accuracy_tracker.update_state(labels, labeled_probabilities)
        self.confident_tracker.update_state(confident)
        return {metric.name: metric.result() for metric in self.metrics}

    def test_step(self, batch):
        images, labels = batch
        probabilities = tf.cast(self.classifier(images, training=False), tf.float32)
        self.labeled_loss_tracker.update_state(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
        self.accuracy_tracker.update_state(labels, probabilities)
        return {"loss": self.labeled_loss_tracker.result(), "accuracy": self.accuracy_tracker.result()}


def matched_labeled_batches(config: TrainingConfig, sizes: Dict[str, int]) -> Tuple[int, int]:
    """(epochs, labeled batches per epoch) of the candidate's semi-supervised stages (FixMatch and
    distillation): one labeled batch of `training.finetune_batch_size` per step, `data.semi_supervised_steps`
    steps per epoch; (0, 0) without those stages. The baseline trains on as many (trainer/finetune.py)."""
    epochs = config.fixmatch_epochs + config.distill_epochs
    return (epochs, data.semi_supervised_steps(sizes, config.batch_size)) if epochs else (0, 0)


def fixmatch_classifier(config: TrainingConfig, strategy: tf.distribute.Strategy, classifier: keras.Model,
                        examples: TrainingExamples, log_dir: str, backup: checkpoints.EpochBackup,
                        keep_paths: Optional[Sequence[bytes]] = None) -> Dict[str, List[float]]:
    """Trains `classifier` in place for `training.fixmatch_epochs` epochs (see the module docstring).

    Args:
      config: the training config (`fixmatch_*`, batch sizes, augmentations).
      strategy: the strategy `classifier` was built under.
      classifier: the fine-tuned candidate classifier.
      examples: what the Trainer reads (trainer/examples.py: the unlabeled, train and eval splits, their sizes).
      log_dir: TensorBoard logs go to `log_dir/fixmatch`.
      backup: the per-epoch backup (and resume) of this fit.
      keep_paths: the label budget's train images (data.label_budget_paths); None for every train label.
        The other train images are still used, without their labels, as unlabeled images.

    Returns:
      `fixmatch/<metric>` -> one value per epoch.

    Raises:
      ValueError: fewer unlabeled and train images than `training.batch_size`.
    """
    steps_per_epoch = data.semi_supervised_steps(examples.sizes, config.batch_size)
    seed = config.seed + 3  # pretraining uses the seed, fine-tuning seed + 1, distillation seed + 2
    with strategy.scope():
        model = FixMatch(
            classifier, build_finetune_augmenter(config.finetune_augment, config.image_size, seed),
            build_augmenter(augment_settings("strong", dict(config.fixmatch_augment)), config.image_size, seed + 1,
                            name="fixmatch_strong_augmenter"),
            config.fixmatch_threshold, config.fixmatch_unlabeled_weight, config.batch_size,
            config.finetune_batch_size, jit_compile_augmentation=config.augment_jit_compile, name="fixmatch",
        )
        model.compile(optimizer=build_classifier_optimizer(config, config.fixmatch_learning_rate,
                                                           config.fixmatch_epochs * steps_per_epoch))
    batches = data.unlabeled_and_labeled_batches(examples.unlabeled_and_train_files, examples.files[TRAIN],
                                                 config.batch_size, config.finetune_batch_size, config.image_size,
                                                 seed, keep_paths, examples.keys)
    eval_dataset = data.labeled_dataset(examples.files[EVAL], 256, config.image_size, seed, shuffle=False,
                                        keys=examples.keys)
    callbacks = [monitors.FailOnNanLoss(), backup, keras.callbacks.TensorBoard(os.path.join(log_dir, PHASE))]
    print(f"[selfsup] fixmatch: {config.fixmatch_epochs} epochs x {steps_per_epoch} steps of {config.batch_size} "
          f"unlabeled and {config.finetune_batch_size} labeled images at learning rate "
          f"{config.fixmatch_learning_rate}, pseudo-labels at confidence >= {config.fixmatch_threshold}", flush=True)
    progress_callbacks, verbose = progress.fit_progress(PHASE)
    history = model.fit(distribute.shard_by_data(batches), validation_data=distribute.shard_by_data(eval_dataset),
                        epochs=config.fixmatch_epochs, callbacks=callbacks + progress_callbacks, verbose=verbose)
    return {f"{PHASE}/{key}": [float(value) for value in values] for key, values in history.history.items()}

