"""Batched, seeded image augmentations for self-supervised pretraining and fine-tuning.

The augmenter is a Keras layer applied to a whole batch inside the training
step. It follows SimCLR's augmentation pipeline (google-research/simclr
`data_util.py`), in this order:

1. random resized crop (area fraction in `[crop_scale_min, crop_scale_max]`,
   aspect ratio in `[3/4, 4/3]`), resized back to `image_size` with bilinear
   interpolation;
2. horizontal flip with `flip_probability`;
3. colour jitter with `jitter_probability`: brightness (multiplicative factor in
   `[1 - brightness, 1 + brightness]`), contrast (factor in
   `[1 - contrast, 1 + contrast]` around each channel's mean), saturation
   (HSV saturation scaled by a factor in `[1 - saturation, 1 + saturation]`)
   and hue (HSV hue shifted by a delta in `[-hue, hue]`), always in this order
   (SimCLR and torchvision shuffle the order per image; a fixed order keeps the
   batched graph small);
4. grayscale with `grayscale_probability`;
5. Gaussian blur with `blur_probability`, sigma uniform in `[0.1, blur_sigma_max]`,
   an odd kernel of about 10% of `image_size` and reflected borders;
6. rotation by 90, 180 or 270 degrees with `rotate90_probability`.

Every random value is drawn per image, so the images of a batch are augmented
differently. An operation whose probability (or every strength, for the colour
jitter) is 0, or a crop whose `crop_scale_min` is 1, is left out of the graph.
Every op is a batched TensorFlow op that XLA compiles (the crop is a pair of
bilinear interpolation matrices rather than `tf.image.crop_and_resize`, which
XLA does not support).

Randomness comes from a `tf.random.Generator` seeded with `seed` and created
when the augmenter is built: two augmenters built with the same seed give the
same output for the same sequence of batches. Under a `tf.distribute`
strategy, build the augmenter inside `strategy.scope()` (like the model): the
generator then gives each replica its own deterministic stream, so replicas do
not repeat each other's augmentations. The generator's state is not part of
the layer's Keras config or weights: a reloaded augmenter starts again from
`seed`.
"""

import math
from typing import Callable, List, Mapping

import keras
import tensorflow as tf

from trainer.hparams import AUGMENT_PRESETS, augment_settings

SETTING_NAMES = tuple(AUGMENT_PRESETS["strong"])
PROBABILITY_NAMES = tuple(name for name in SETTING_NAMES if name.endswith("probability"))
JITTER_STRENGTH_NAMES = ("brightness", "contrast", "saturation", "hue")
MIN_ASPECT_RATIO = 3.0 / 4.0
MAX_ASPECT_RATIO = 4.0 / 3.0
MIN_BLUR_SIGMA = 0.1
MIN_IMAGE_SIZE = 8


@keras.saving.register_keras_serializable(package="selfsup")
class ImageAugmenter(keras.layers.Layer):
    """Random SimCLR-style augmentation of a batch of square RGB images.

    Call it with float32 images of shape (batch, image_size, image_size, 3) in
    [0, 1]; it returns the same shape, in [0, 1]. With `training=False` (the
    default) it returns the images unchanged.

    Args:
        settings: every key of `trainer.hparams.AUGMENT_PRESETS["strong"]`, no other.
        image_size: height and width of the images, at least 8.
        seed: seed of the random-number generator.
        **kwargs: passed to `keras.layers.Layer` (for example `name`).

    Raises:
        ValueError: a setting is missing, unknown or out of range, or `image_size` is too small.
    """

    def __init__(self, settings: Mapping[str, float], image_size: int, seed: int, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        _validate_settings(settings)
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
        self.settings = {name: float(settings[name]) for name in SETTING_NAMES}
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.generator = tf.random.Generator.from_seed(self.seed)
        self.built = True

    def call(self, images, training=False):
        """Augments `images` (batch, image_size, image_size, 3) when `training` is true."""
        if not training:
            return images
        self._check_image_shape(images.shape)
        for operation in self._enabled_operations():
            images = operation(images)
        # Interpolation and blurring weights sum to 1 only up to rounding errors.
        return tf.clip_by_value(images, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(settings=dict(self.settings), image_size=self.image_size, seed=self.seed)
        return config

    def _check_image_shape(self, shape: tf.TensorShape) -> None:
        """Raises ValueError unless `shape` is (batch, image_size, image_size, 3)."""
        expected = [self.image_size, self.image_size, 3]
        if shape.rank != 4 or list(shape[1:]) != expected:
            raise ValueError(
                f"{self.name} expects images of shape (batch, {self.image_size}, {self.image_size}, 3), got {shape}"
            )

    def _enabled_operations(self) -> List[Callable[[tf.Tensor], tf.Tensor]]:
        """The augmentation steps that can change an image, in application order."""
        settings = self.settings
        steps = [
            (settings["crop_scale_min"] < 1.0, self._random_resized_crop),
            (settings["flip_probability"] > 0.0, self._random_flip),
            (
                settings["jitter_probability"] > 0.0 and any(settings[name] > 0.0 for name in JITTER_STRENGTH_NAMES),
                self._random_color_jitter,
            ),
            (settings["grayscale_probability"] > 0.0, self._random_grayscale),
            (settings["blur_probability"] > 0.0, self._random_blur),
            (settings["rotate90_probability"] > 0.0, self._random_rotate90),
        ]
        return [operation for enabled, operation in steps if enabled]

    def _uniform(self, images: tf.Tensor, minimum, maximum) -> tf.Tensor:
        """One uniform random float per image, shape (batch,)."""
        return self.generator.uniform([tf.shape(images)[0]], minval=minimum, maxval=maximum)

    def _per_image_mask(self, images: tf.Tensor, probability: float) -> tf.Tensor:
        """Booleans of shape (batch, 1, 1, 1), each true with `probability`."""
        return tf.reshape(self._uniform(images, 0.0, 1.0) < probability, [-1, 1, 1, 1])

    def _random_resized_crop(self, images: tf.Tensor) -> tf.Tensor:
        """Crops a random box of each image and resizes it back to image_size."""
        area = self._uniform(images, self.settings["crop_scale_min"], self.settings["crop_scale_max"])
        log_area = tf.math.log(area)
        # Aspect ratios for which a box of this area fits in the image: [area, 1 / area].
        lowest_log_ratio = tf.maximum(math.log(MIN_ASPECT_RATIO), log_area)
        highest_log_ratio = tf.minimum(math.log(MAX_ASPECT_RATIO), -log_area)
        log_ratio = lowest_log_ratio + self._uniform(images, 0.0, 1.0) * (highest_log_ratio - lowest_log_ratio)
        box_width = tf.minimum(tf.sqrt(area * tf.exp(log_ratio)), 1.0)
        box_height = tf.minimum(tf.sqrt(area / tf.exp(log_ratio)), 1.0)
        box_top = self._uniform(images, 0.0, 1.0) * (1.0 - box_height)
        box_left = self._uniform(images, 0.0, 1.0) * (1.0 - box_width)
        row_weights = _bilinear_resize_matrix(box_top, box_height, self.image_size)
        column_weights = _bilinear_resize_matrix(box_left, box_width, self.image_size)
        rows_resized = tf.einsum("bij,bjwc->biwc", row_weights, images)
        return tf.einsum("bkw,biwc->bikc", column_weights, rows_resized)

    def _random_flip(self, images: tf.Tensor) -> tf.Tensor:
        """Mirrors each image left-right with flip_probability."""
        flip = self._per_image_mask(images, self.settings["flip_probability"])
        return tf.where(flip, tf.reverse(images, axis=[2]), images)

    def _random_color_jitter(self, images: tf.Tensor) -> tf.Tensor:
        """Jitters brightness, contrast, saturation and hue of each image with jitter_probability."""
        jitter = self._per_image_mask(images, self.settings["jitter_probability"])
        jittered = images
        if self.settings["brightness"] > 0.0:
            jittered = jittered * self._random_factor(jittered, self.settings["brightness"])
            jittered = tf.clip_by_value(jittered, 0.0, 1.0)
        if self.settings["contrast"] > 0.0:
            channel_means = tf.reduce_mean(jittered, axis=[1, 2], keepdims=True)
            factor = self._random_factor(jittered, self.settings["contrast"])
            jittered = tf.clip_by_value((jittered - channel_means) * factor + channel_means, 0.0, 1.0)
        if self.settings["saturation"] > 0.0 or self.settings["hue"] > 0.0:
            jittered = self._jitter_saturation_and_hue(jittered)
        return tf.where(jitter, jittered, images)

    def _jitter_saturation_and_hue(self, images: tf.Tensor) -> tf.Tensor:
        """Scales the HSV saturation and shifts the HSV hue of each image by random amounts."""
        hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(images), axis=-1)
        if self.settings["saturation"] > 0.0:
            factor = tf.reshape(self._random_factor(images, self.settings["saturation"]), [-1, 1, 1])
            saturation = tf.clip_by_value(saturation * factor, 0.0, 1.0)
        if self.settings["hue"] > 0.0:
            delta = tf.reshape(self._uniform(images, -self.settings["hue"], self.settings["hue"]), [-1, 1, 1])
            hue = tf.math.floormod(hue + delta, 1.0)
        return tf.clip_by_value(tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=-1)), 0.0, 1.0)

    def _random_factor(self, images: tf.Tensor, strength: float) -> tf.Tensor:
        """Per-image factors in [max(0, 1 - strength), 1 + strength], shape (batch, 1, 1, 1)."""
        return tf.reshape(self._uniform(images, max(0.0, 1.0 - strength), 1.0 + strength), [-1, 1, 1, 1])

    def _random_grayscale(self, images: tf.Tensor) -> tf.Tensor:
        """Replaces each image by its luma, on all three channels, with grayscale_probability."""
        grayscale = self._per_image_mask(images, self.settings["grayscale_probability"])
        return tf.where(grayscale, tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(images)), images)

    def _random_blur(self, images: tf.Tensor) -> tf.Tensor:
        """Blurs each image with a Gaussian of random sigma with blur_probability."""
        blur = self._per_image_mask(images, self.settings["blur_probability"])
        sigma = self._uniform(images, MIN_BLUR_SIGMA, self.settings["blur_sigma_max"])
        return tf.where(blur, _gaussian_blur(images, sigma, blur_radius(self.image_size)), images)

    def _random_rotate90(self, images: tf.Tensor) -> tf.Tensor:
        """Rotates each image by 90, 180 or 270 degrees with rotate90_probability."""
        rotate = self._uniform(images, 0.0, 1.0) < self.settings["rotate90_probability"]
        quarter_turns = self.generator.uniform([tf.shape(images)[0]], minval=1, maxval=4, dtype=tf.int32)
        quarter_turns = tf.where(rotate, quarter_turns, 0)
        return tf.gather(_all_rotations(images), quarter_turns, axis=1, batch_dims=1)


def build_augmenter(settings: Mapping[str, float], image_size: int, seed: int, name: str) -> ImageAugmenter:
    """An augmenter of (batch, image_size, image_size, 3) float32 images in [0, 1].

    Build it inside the `tf.distribute` strategy scope that runs the training step.

    Args:
        settings: every key of `trainer.hparams.AUGMENT_PRESETS["strong"]`, no other.
        image_size: height and width of the images, at least 8.
        seed: seed of the augmenter's random-number generator.
        name: name of the Keras layer.

    Returns:
        The augmentation layer; it augments only when called with `training=True`.

    Raises:
        ValueError: a setting is missing, unknown or out of range, or `image_size` is too small.
    """
    return ImageAugmenter(settings, image_size, seed, name=name)


def build_pretrain_augmenter(overrides: Mapping[str, float], image_size: int, seed: int) -> ImageAugmenter:
    """The "strong" preset with `overrides` applied, for self-supervised pretraining (see `build_augmenter`)."""
    return build_augmenter(augment_settings("strong", dict(overrides)), image_size, seed, name="pretrain_augmenter")


def build_finetune_augmenter(overrides: Mapping[str, float], image_size: int, seed: int) -> ImageAugmenter:
    """The "weak" preset with `overrides` applied, for fine-tuning (see `build_augmenter`)."""
    return build_augmenter(augment_settings("weak", dict(overrides)), image_size, seed, name="finetune_augmenter")


def view_maker(augmenter: keras.layers.Layer, jit_compile: bool) -> Callable[[tf.Tensor], tf.Tensor]:
    """images -> augmented views, for a training step: `augmenter(images, training=True)`, compiled with XLA on
    its own when `jit_compile` (`training.augment_jit_compile`).

    XLA fuses the augmentation's many small element-wise ops: 3-5x more images per CPU-second for the strong
    preset on a 2-core Zen 4 (docs/benchmarks.md section 7), where compiling the whole step was slower.
    The views come from the same distribution, not the same random numbers (XLA has its own random-bit
    generator), so a compiled and an uncompiled run of one seed see different views.
    """
    def make_views(images: tf.Tensor) -> tf.Tensor:
        return augmenter(images, training=True)

    return tf.function(make_views, jit_compile=True) if jit_compile else make_views


def blur_radius(image_size: int) -> int:
    """Half-width of the blur kernel: the kernel has 2 * radius + 1 taps, about 10% of image_size."""
    return max(1, image_size // 20)


def _validate_settings(settings: Mapping[str, float]) -> None:
    """Raises ValueError naming the first missing, unknown or out-of-range setting."""
    missing = sorted(set(SETTING_NAMES) - set(settings))
    unknown = sorted(set(settings) - set(SETTING_NAMES))
    if missing or unknown:
        raise ValueError(f"augmentation settings: missing {missing}, unknown {unknown}; expected {list(SETTING_NAMES)}")
    for name in SETTING_NAMES:
        value = settings[name]
        if value < 0.0 or (name in PROBABILITY_NAMES and value > 1.0):
            raise ValueError(f"augmentation setting {name!r} is out of range: {value}")
    if not 0.0 < settings["crop_scale_min"] <= settings["crop_scale_max"] <= 1.0:
        raise ValueError(
            "augmentation settings must satisfy 0 < crop_scale_min <= crop_scale_max <= 1, got "
            f"{settings['crop_scale_min']} and {settings['crop_scale_max']}"
        )
    if settings["hue"] > 0.5:
        raise ValueError(f"augmentation setting 'hue' must be at most 0.5, got {settings['hue']}")
    if settings["blur_probability"] > 0.0 and settings["blur_sigma_max"] < MIN_BLUR_SIGMA:
        raise ValueError(
            f"augmentation setting 'blur_sigma_max' must be at least {MIN_BLUR_SIGMA} when blurring, "
            f"got {settings['blur_sigma_max']}"
        )


def _bilinear_resize_matrix(start: tf.Tensor, length: tf.Tensor, size: int) -> tf.Tensor:
    """Per-image matrices that resample the span [start, start + length] of an axis to `size` pixels.

    Multiplying an image axis of `size` pixels by this matrix gives bilinear
    interpolation with half-pixel centres (the whole axis maps to itself).

    Args:
        start: (batch,) start of the span, as a fraction of the axis.
        length: (batch,) length of the span, as a fraction of the axis.
        size: number of pixels of the axis, before and after resampling.

    Returns:
        (batch, size, size) float32 weights: output pixel i is the sum over j of weights[:, i, j] * input[j].
    """
    output_centres = (tf.range(size, dtype=tf.float32) + 0.5) / size
    source = (start[:, tf.newaxis] + output_centres[tf.newaxis, :] * length[:, tf.newaxis]) * size - 0.5
    source = tf.clip_by_value(source, 0.0, size - 1.0)
    input_pixels = tf.range(size, dtype=tf.float32)
    return tf.nn.relu(1.0 - tf.abs(source[:, :, tf.newaxis] - input_pixels[tf.newaxis, tf.newaxis, :]))


def _all_rotations(images: tf.Tensor) -> tf.Tensor:
    """The square images rotated counter-clockwise by 0, 90, 180 and 270 degrees.

    Args:
        images: (batch, size, size, channels).

    Returns:
        (batch, 4, size, size, channels): index k along axis 1 is rotated by k * 90 degrees.
    """
    transposed = tf.transpose(images, [0, 2, 1, 3])
    rotations = [
        images,
        tf.reverse(transposed, axis=[1]),
        tf.reverse(images, axis=[1, 2]),
        tf.reverse(transposed, axis=[2]),
    ]
    return tf.stack(rotations, axis=1)


def _gaussian_blur(images: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Blurs each image with its own separable Gaussian kernel, reflecting the borders.

    The batch is folded into the channels so that one depthwise convolution
    applies every image's kernel at once.

    Args:
        images: (batch, height, width, channels) float32.
        sigma: (batch,) standard deviation of each image's kernel, in pixels.
        radius: half-width of the kernel (2 * radius + 1 taps); smaller than height and width.

    Returns:
        (batch, height, width, channels) blurred images.
    """
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernels = tf.exp(-tf.square(offsets[tf.newaxis, :]) / (2.0 * tf.square(sigma[:, tf.newaxis])))
    kernels = kernels / tf.reduce_sum(kernels, axis=1, keepdims=True)
    shape = tf.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    # (batch, taps) -> (taps, batch * channels): one kernel per folded channel.
    folded_kernels = tf.reshape(tf.repeat(kernels, channels, axis=0), [batch * channels, -1])
    folded_kernels = tf.transpose(folded_kernels)
    folded = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, height, width, batch * channels])
    folded = tf.pad(folded, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    vertical = folded_kernels[:, tf.newaxis, :, tf.newaxis]
    horizontal = folded_kernels[tf.newaxis, :, :, tf.newaxis]
    folded = tf.nn.depthwise_conv2d(folded, vertical, strides=[1, 1, 1, 1], padding="VALID")
    folded = tf.nn.depthwise_conv2d(folded, horizontal, strides=[1, 1, 1, 1], padding="VALID")
    blurred = tf.reshape(folded, [height, width, batch, channels])
    return tf.transpose(blurred, [2, 0, 1, 3])
