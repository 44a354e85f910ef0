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
images, so it grows as the classifier becomes confident. The step's skeleton, shared with distillation,
is trainer/semi_supervised.py's. The history (`fixmatch/...`) has `loss`, `labeled_loss`, `unlabeled_loss`,
`accuracy` (labeled batch), `confident_fraction` (share of unlabeled images with a pseudo-label) and,
on the eval split, `val_loss` (cross-entropy) and `val_accuracy`.
"""

from typing import Dict, List, Optional, Sequence

import keras
import tensorflow as tf

from trainer import checkpoints, data, semi_supervised
from trainer.augment import build_augmenter, build_finetune_augmenter, view_maker
from trainer.contract import FIXMATCH_PHASE
from trainer.examples import TrainingExamples
from trainer.finetune import build_classifier_optimizer
from trainer.hparams import TrainingConfig, augment_settings


class FixMatch(semi_supervised.SemiSupervisedModel):
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
        super().__init__(1.0, unlabeled_weight, unlabeled_batch_size, labeled_batch_size,
                         unlabeled_loss_name="unlabeled_loss", extra_metric_name="confident_fraction", **kwargs)
        self.classifier = classifier
        self.weak_augmenter = weak_augmenter
        self.strong_augmenter = strong_augmenter
        self.weak_views = view_maker(weak_augmenter, jit_compile_augmentation)
        self.strong_views = view_maker(strong_augmenter, jit_compile_augmentation)
        self.threshold = threshold

    @property
    def trained(self) -> keras.Model:
        return self.classifier

    def views_and_targets(self, unlabeled_images, labeled_images):
        """The strong views are trained on; the weak views' confident guesses are their targets."""
        weak_views = self.weak_views(unlabeled_images)
        strong_views = self.strong_views(unlabeled_images)
        labeled_views = self.weak_views(labeled_images)
        guesses = tf.stop_gradient(tf.cast(self.classifier(weak_views, training=False), tf.float32))
        pseudo_labels = tf.argmax(guesses, axis=-1)
        confident = tf.cast(tf.reduce_max(guesses, axis=-1) >= self.threshold, tf.float32)
        return strong_views, labeled_views, (pseudo_labels, confident)

    def unlabeled_losses(self, targets, unlabeled_probabilities):
        pseudo_labels, confident = targets
        return confident * keras.losses.sparse_categorical_crossentropy(pseudo_labels, unlabeled_probabilities)

    def extra_metric(self, targets, unlabeled_probabilities):
        """confident_fraction: the share of unlabeled images with a pseudo-label."""
        return targets[1]


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
    return semi_supervised.fit_stage(
        model, FIXMATCH_PHASE, config.fixmatch_epochs, config, strategy, examples, seed, keep_paths, log_dir, backup,
        f"fixmatch: {config.fixmatch_epochs} epochs x {steps_per_epoch} steps of {config.batch_size} "
        f"unlabeled and {config.finetune_batch_size} labeled images at learning rate "
        f"{config.fixmatch_learning_rate}, pseudo-labels at confidence >= {config.fixmatch_threshold}")
