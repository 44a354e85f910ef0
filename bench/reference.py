"""The reference pretraining step: SimCLR as in the keras-io example "Semi-supervised image
classification using contrastive pretraining with SimCLR" (keras-io examples/vision/semisupervised_simclr.py).

Written here from that example's description, on purpose without importing anything from `trainer/`,
so that the benchmark compares our step with an independent one:

* augmentation inside the step, twice per image: RandomFlip("horizontal"), RandomTranslation,
  RandomZoom and the example's RandomColorAffine (brightness scale + random 3x3 colour matrix),
  with the example's contrastive settings (min_area 0.25, brightness 0.6, jitter 0.2);
* encoder: 4 x Conv2D(width, 3, strides=2, relu) with Keras's default "valid" padding, Flatten,
  Dense(width, relu) (on 32x32 images: 32 -> 15 -> 7 -> 3 -> 1 pixels, 128 features);
* projection head Dense(width, relu), Dense(width);
* the example's own NT-Xent: (B, B) cosine similarities between the two views' projections divided by
  the temperature, symmetric sparse categorical cross-entropy, contrastive accuracy tracked;
* Adam with its default learning rate.

Two differences from the example, both making the reference step cheaper or equal, never slower:
the example's inputs are uint8 and it starts with Rescaling(1/255) (ours are already floats in [0, 1],
so the layer is left out), and its step also trains an online linear probe on a separate labeled batch
(left out, like our pretraining step, which has no probe in `selfsup run`).
"""

import math

import keras
import tensorflow as tf
from keras import layers, ops

# keras-io's contrastive augmentation settings and hyperparameters.
CONTRASTIVE_AUGMENTATION = {"min_area": 0.25, "brightness": 0.6, "jitter": 0.2}
TEMPERATURE = 0.1


class RandomColorAffine(layers.Layer):
    """keras-io's colour augmentation: per image, brightness * I + a random 3x3 jitter matrix."""

    def __init__(self, brightness=0.0, jitter=0.0, seed=1337, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.brightness = brightness
        self.jitter = jitter

    def call(self, images, training=True):
        if not training:
            return images
        batch_size = ops.shape(images)[0]
        brightness_scales = 1 + keras.random.uniform(
            (batch_size, 1, 1, 1), minval=-self.brightness, maxval=self.brightness, seed=self.seed_generator
        )
        jitter_matrices = keras.random.uniform(
            (batch_size, 1, 3, 3), minval=-self.jitter, maxval=self.jitter, seed=self.seed_generator
        )
        color_transforms = (
            ops.tile(ops.expand_dims(ops.eye(3, dtype=images.dtype), axis=0), (batch_size, 1, 1, 1))
            * ops.cast(brightness_scales, images.dtype)
            + ops.cast(jitter_matrices, images.dtype)
        )
        return ops.clip(ops.matmul(images, color_transforms), 0, 1)


def reference_augmenter(min_area: float, brightness: float, jitter: float, seed: int = 1337) -> keras.Sequential:
    """keras-io `get_augmenter` without its leading Rescaling(1/255) (our images are floats in [0, 1])."""
    zoom_factor = 1.0 - math.sqrt(min_area)
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomTranslation(zoom_factor / 2, zoom_factor / 2, seed=seed + 1),
            layers.RandomZoom((-zoom_factor, 0.0), (-zoom_factor, 0.0), seed=seed + 2),
            RandomColorAffine(brightness, jitter, seed=seed + 3),
        ],
        name="reference_augmenter",
    )


def reference_encoder(width: int, image_size: int) -> keras.Sequential:
    """keras-io `get_encoder`: 4 x Conv2D(width, 3, strides=2, relu) ("valid" padding), Flatten, Dense."""
    return keras.Sequential(
        [
            keras.Input(shape=(image_size, image_size, 3)),
            layers.Conv2D(width, kernel_size=3, strides=2, activation="relu"),
            layers.Conv2D(width, kernel_size=3, strides=2, activation="relu"),
            layers.Conv2D(width, kernel_size=3, strides=2, activation="relu"),
            layers.Conv2D(width, kernel_size=3, strides=2, activation="relu"),
            layers.Flatten(),
            layers.Dense(width, activation="relu"),
        ],
        name="reference_encoder",
    )


class ReferenceSimCLR(keras.Model):
    """keras-io `ContrastiveModel`'s contrastive part: batches of (B, H, W, 3) floats in [0, 1]."""

    def __init__(self, width: int = 128, image_size: int = 32, temperature: float = TEMPERATURE, **kwargs):
        super().__init__(**kwargs)
        self.temperature = temperature
        self.contrastive_augmenter = reference_augmenter(**CONTRASTIVE_AUGMENTATION)
        self.encoder = reference_encoder(width, image_size)
        self.projection_head = keras.Sequential(
            [keras.Input(shape=(width,)), layers.Dense(width, activation="relu"), layers.Dense(width)],
            name="projection_head",
        )
        self.contrastive_loss_tracker = keras.metrics.Mean(name="c_loss")
        self.contrastive_accuracy = keras.metrics.SparseCategoricalAccuracy(name="c_acc")

    @property
    def metrics(self):
        return [self.contrastive_loss_tracker, self.contrastive_accuracy]

    def contrastive_loss(self, projections_1, projections_2):
        """keras-io's NT-Xent: symmetric cross-entropy over the (B, B) similarities of the two views."""
        projections_1 = ops.normalize(ops.cast(projections_1, "float32"), axis=1)
        projections_2 = ops.normalize(ops.cast(projections_2, "float32"), axis=1)
        similarities = ops.matmul(projections_1, ops.transpose(projections_2)) / self.temperature
        batch_size = ops.shape(projections_1)[0]
        contrastive_labels = ops.arange(batch_size)
        self.contrastive_accuracy.update_state(contrastive_labels, similarities)
        self.contrastive_accuracy.update_state(contrastive_labels, ops.transpose(similarities))
        loss_1_2 = keras.losses.sparse_categorical_crossentropy(contrastive_labels, similarities, from_logits=True)
        loss_2_1 = keras.losses.sparse_categorical_crossentropy(
            contrastive_labels, ops.transpose(similarities), from_logits=True
        )
        return (loss_1_2 + loss_2_1) / 2

    def train_step(self, data):
        images = data
        augmented_images_1 = self.contrastive_augmenter(images, training=True)
        augmented_images_2 = self.contrastive_augmenter(images, training=True)
        variables = self.encoder.trainable_weights + self.projection_head.trainable_weights
        with tf.GradientTape() as tape:
            features_1 = self.encoder(augmented_images_1, training=True)
            features_2 = self.encoder(augmented_images_2, training=True)
            projections_1 = self.projection_head(features_1, training=True)
            projections_2 = self.projection_head(features_2, training=True)
            contrastive_loss = self.contrastive_loss(projections_1, projections_2)
        gradients = tape.gradient(contrastive_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.contrastive_loss_tracker.update_state(contrastive_loss)
        return {metric.name: metric.result() for metric in self.metrics}
