"""Distillation of the fine-tuned candidate into a student on the unlabeled images (SimCLRv2's third stage).

The teacher is the fine-tuned candidate classifier, frozen. The student is a classifier of the same
architecture (`finetune.build_classifier` around a fresh encoder). Its encoder starts from the
encoder's weights before fine-tuning (after pretraining, or from `training.encoder_weights`) and its
head from random weights: a copy of the teacher would already agree with it everywhere, so the soft
targets would teach it little beyond more fine-tuning. Without pretrained weights (no pretraining and
no weights file) the student starts as a copy of the teacher.

Each step takes a batch of unlabeled and train images (`training.batch_size`, labels ignored) and a
batch of labeled train images (`training.finetune_batch_size`), both weakly augmented
(`training.finetune_augment`); teacher and student see the same views:

    loss = mean soft_cross_entropy(teacher, student, distill_temperature) over the unlabeled batch
           + distill_labeled_weight * mean cross-entropy over the labeled batch

The step's skeleton, shared with FixMatch, is trainer/semi_supervised.py's. The history
(`distill/...`) has `loss`, `distillation_loss`, `labeled_loss`, `accuracy` (labeled batch),
`teacher_agreement` (fraction of the unlabeled images where the student's most likely class is the
teacher's) and, on the eval split, `val_loss` (cross-entropy) and `val_accuracy`.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from trainer import checkpoints, data, semi_supervised
from trainer.augment import build_finetune_augmenter, view_maker
from trainer.contract import DISTILL_PHASE
from trainer.encoders import build_encoder, encoder_outputs_sequence
from trainer.examples import TrainingExamples
from trainer.finetune import build_classifier, build_classifier_optimizer
from trainer.hparams import TrainingConfig

# Probabilities are clipped to [EPSILON, 1] before their logarithm, as Keras' cross-entropy does.
EPSILON = 1e-7


def soft_cross_entropy(teacher_probabilities: tf.Tensor, student_probabilities: tf.Tensor,
                       temperature: float) -> tf.Tensor:
    """Cross-entropy of the student's softened class distribution against the teacher's.

    Both classifiers end in a softmax, so log p = logits - constant and softmax(log p / T) is
    softmax(logits / T): the distribution at temperature T. Not multiplied by T^2 (as SimCLRv2).

    Args:
      teacher_probabilities: (B, C) probabilities; no gradient flows into them.
      student_probabilities: (B, C) probabilities.
      temperature: T > 0; T > 1 softens both distributions.

    Returns:
      (B,) float32: -sum_c teacher_T[c] * log student_T[c].
    """
    def tempered_log_probabilities(probabilities):
        log_probabilities = tf.math.log(tf.clip_by_value(tf.cast(probabilities, tf.float32), EPSILON, 1.0))
        return tf.nn.log_softmax(log_probabilities / temperature, axis=-1)

    teacher_soft = tf.stop_gradient(tf.exp(tempered_log_probabilities(teacher_probabilities)))
    return -tf.reduce_sum(teacher_soft * tempered_log_probabilities(student_probabilities), axis=-1)


class Distillation(semi_supervised.SemiSupervisedModel):
    """Trains `student` on `teacher`'s soft predictions plus the labels (see the module docstring).

    Batches are `(unlabeled_images (B, H, W, 3), (labeled_images (L, H, W, 3), labels (L,)))` in
    training and `(images, labels)` in evaluation (the student alone). Only the student trains.

    Args:
      teacher: the fine-tuned classifier, images -> (B, C) probabilities; frozen here.
      student: a classifier of the same input and output shapes.
      augmenter: the weak augmentation, applied inside the step.
      temperature: `training.distill_temperature`.
      labeled_weight: `training.distill_labeled_weight`.
      unlabeled_batch_size, labeled_batch_size: the global batch sizes (every batch is full).
      jit_compile_augmentation: `training.augment_jit_compile` (trainer/augment.py view_maker).
    """

    def __init__(self, teacher: keras.Model, student: keras.Model, augmenter: keras.layers.Layer,
                 temperature: float, labeled_weight: float, unlabeled_batch_size: int, labeled_batch_size: int,
                 jit_compile_augmentation: bool = False, **kwargs):
        super().__init__(labeled_weight, 1.0, unlabeled_batch_size, labeled_batch_size,
                         unlabeled_loss_name="distillation_loss", extra_metric_name="teacher_agreement",
                         unlabeled_loss_first=True, **kwargs)
        teacher.trainable = False
        self.teacher = teacher
        self.student = student
        self.augmenter = augmenter
        self.make_views = view_maker(augmenter, jit_compile_augmentation)
        self.temperature = temperature

    @property
    def trained(self) -> keras.Model:
        return self.student

    def views_and_targets(self, unlabeled_images, labeled_images):
        """Teacher and student see the same weak views; the teacher's probabilities are the targets."""
        unlabeled_views = self.make_views(unlabeled_images)
        labeled_views = self.make_views(labeled_images)
        teacher_probabilities = tf.cast(self.teacher(unlabeled_views, training=False), tf.float32)
        return unlabeled_views, labeled_views, teacher_probabilities

    def unlabeled_losses(self, targets, unlabeled_probabilities):
        return soft_cross_entropy(targets, unlabeled_probabilities, self.temperature)

    def extra_metric(self, targets, unlabeled_probabilities):
        """teacher_agreement: where the student's most likely class is the teacher's."""
        return tf.cast(tf.argmax(unlabeled_probabilities, axis=-1) == tf.argmax(targets, axis=-1), tf.float32)


def pretrained_encoder_weights(config: TrainingConfig, encoder: keras.Model) -> Optional[List[np.ndarray]]:
    """The encoder's weights before fine-tuning, for the student; None when they are random weights.

    Call it after pretraining and before fine-tuning.
    """
    if config.pretrain_epochs > 0 or config.encoder_weights or config.init_encoder:
        return encoder.get_weights()
    return None


def distill_classifier(config: TrainingConfig, strategy: tf.distribute.Strategy, teacher: keras.Model,
                       encoder_weights: Optional[List[np.ndarray]], examples: TrainingExamples,
                       log_dir: str, backup: checkpoints.EpochBackup,
                       keep_paths: Optional[Sequence[bytes]] = None) -> Tuple[keras.Model, Dict[str, List[float]]]:
    """Distils `teacher` into a new student for `training.distill_epochs` epochs (see the module docstring).

    Args:
      config: the training config (`distill_*`, batch sizes, augmentation, encoder).
      strategy: the strategy `teacher` was built under.
      teacher: the fine-tuned candidate classifier; frozen (its `trainable` is set to False).
      encoder_weights: `pretrained_encoder_weights(...)`: the student's initial encoder weights, or
        None to start the student as a copy of the teacher.
      examples: what the Trainer reads (trainer/examples.py: the unlabeled, train and eval splits, their sizes).
      log_dir: TensorBoard logs go to `log_dir/distill`.
      backup: the per-epoch backup (and resume) of this fit.
      keep_paths: the label budget's train images (data.label_budget_paths); None for every train label.
        The other train images are still distilled on, without their labels.

    Returns:
      (student, history): the trained student classifier (what is exported) and `distill/<metric>`
      -> one value per epoch.

    Raises:
      ValueError: fewer unlabeled and train images than `training.batch_size`.
    """
    steps_per_epoch = data.semi_supervised_steps(examples.sizes, config.batch_size)
    seed = config.seed + 2  # pretraining uses the seed, fine-tuning seed + 1
    with strategy.scope():
        student_encoder = build_encoder(config.encoder, config.image_size, config.encoder_width)
        student = build_classifier(student_encoder, teacher.output.shape[-1], config.image_size,
                                   encoder_outputs_sequence(config.encoder))
        if encoder_weights is None:
            student.set_weights(teacher.get_weights())
        else:
            student_encoder.set_weights(encoder_weights)
        model = Distillation(
            teacher, student, build_finetune_augmenter(config.finetune_augment, config.image_size, seed),
            config.distill_temperature, config.distill_labeled_weight, config.batch_size,
            config.finetune_batch_size, jit_compile_augmentation=config.augment_jit_compile, name="distillation",
        )
        model.compile(optimizer=build_classifier_optimizer(config, config.distill_learning_rate,
                                                           config.distill_epochs * steps_per_epoch))
    return student, semi_supervised.fit_stage(
        model, DISTILL_PHASE, config.distill_epochs, config, strategy, examples, seed, keep_paths, log_dir, backup,
        f"distillation: {config.distill_epochs} epochs x {steps_per_epoch} steps of {config.batch_size} "
        f"unlabeled and {config.finetune_batch_size} labeled images at learning rate {config.distill_learning_rate}, "
        f"temperature {config.distill_temperature}, student from "
        f"{'the teacher' if encoder_weights is None else 'the pretrained encoder'}")
