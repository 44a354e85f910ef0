"""Tests of trainer.augment on real images (conftest.real_images: CIFAR-10, else the digits)."""

import numpy as np
import pytest
import tensorflow as tf

from trainer import augment
from trainer.hparams import AUGMENT_PRESETS

IMAGE_COUNT = 8
IMAGE_SIZE = 32
SEED = 1234

# Every operation off: no crop, all probabilities 0.
NO_AUGMENTATION = {
    **AUGMENT_PRESETS["weak"],
    "crop_scale_min": 1.0,
    "flip_probability": 0.0,
}
# One operation on with probability 1, for each operation of the augmenter.
SINGLE_OPERATIONS = {
    "crop": {"crop_scale_min": 0.2, "crop_scale_max": 0.5},
    "flip": {"flip_probability": 1.0},
    "jitter": {
        "jitter_probability": 1.0,
        **{name: AUGMENT_PRESETS["strong"][name] for name in augment.JITTER_STRENGTH_NAMES},
    },
    "grayscale": {"grayscale_probability": 1.0},
    "blur": {"blur_probability": 1.0},
    "rotate90": {"rotate90_probability": 1.0},
}
# The strong preset with every operation enabled.
ALL_OPERATIONS = {"blur_probability": 0.5, "rotate90_probability": 0.5}


@pytest.fixture(scope="module")
def images(real_images) -> tf.Tensor:
    """(8, 32, 32, 3) float32 real images in [0, 1] from the session's sample."""
    paths = sorted(real_images.glob("labeled/*/*.jpg"))[:IMAGE_COUNT]
    decoded = [tf.io.decode_jpeg(tf.io.read_file(str(path)), channels=3) for path in paths]
    return tf.image.convert_image_dtype(tf.stack(decoded), tf.float32)


def _settings(**overrides) -> dict:
    """NO_AUGMENTATION with `overrides`."""
    return {**NO_AUGMENTATION, **overrides}


def _augment(settings: dict, images: tf.Tensor, seed: int = SEED) -> np.ndarray:
    """`images` through a fresh augmenter in training mode."""
    augmenter = augment.build_augmenter(settings, IMAGE_SIZE, seed, name="test_augmenter")
    return augmenter(images, training=True).numpy()


def test_real_images_are_loaded(images):
    assert images.shape == (IMAGE_COUNT, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert float(tf.math.reduce_std(images)) > 0.05


@pytest.mark.parametrize("builder", [augment.build_pretrain_augmenter, augment.build_finetune_augmenter])
def test_presets_keep_shape_and_range(images, builder):
    augmented = builder(ALL_OPERATIONS, IMAGE_SIZE, SEED)(images, training=True).numpy()

    assert augmented.shape == images.shape
    assert augmented.dtype == np.float32
    assert augmented.min() >= 0.0
    assert augmented.max() <= 1.0


def test_identical_images_are_augmented_differently(images):
    copies = tf.repeat(images[:1], IMAGE_COUNT, axis=0)

    augmented = augment.build_pretrain_augmenter({}, IMAGE_SIZE, SEED)(copies, training=True).numpy()

    distinct = {augmented[index].tobytes() for index in range(IMAGE_COUNT)}
    assert len(distinct) == IMAGE_COUNT


def test_same_seed_gives_same_output(images):
    settings = augment.augment_settings("strong", ALL_OPERATIONS)

    first = _augment(settings, images, seed=7)
    second = _augment(settings, images, seed=7)
    other_seed = _augment(settings, images, seed=8)

    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other_seed)


def test_successive_calls_draw_new_augmentations(images):
    augmenter = augment.build_pretrain_augmenter({}, IMAGE_SIZE, SEED)

    first_view = augmenter(images, training=True).numpy()
    second_view = augmenter(images, training=True).numpy()

    assert not np.array_equal(first_view, second_view)


def test_inference_is_identity(images):
    augmenter = augment.build_pretrain_augmenter(ALL_OPERATIONS, IMAGE_SIZE, SEED)

    np.testing.assert_array_equal(augmenter(images, training=False).numpy(), images.numpy())
    np.testing.assert_array_equal(augmenter(images).numpy(), images.numpy())


def test_no_operation_leaves_images_unchanged(images):
    np.testing.assert_array_equal(_augment(NO_AUGMENTATION, images), images.numpy())


def test_weak_preset_with_flip_only_only_flips(images):
    augmenter = augment.build_finetune_augmenter({"crop_scale_min": 1.0}, IMAGE_SIZE, SEED)

    augmented = augmenter(images, training=True).numpy()

    originals = images.numpy()
    flipped = originals[:, :, ::-1, :]
    is_flipped = [np.array_equal(augmented[index], flipped[index]) for index in range(IMAGE_COUNT)]
    is_original = [np.array_equal(augmented[index], originals[index]) for index in range(IMAGE_COUNT)]
    assert all(flip or original for flip, original in zip(is_flipped, is_original, strict=True))
    assert any(is_flipped) and any(is_original)


@pytest.mark.parametrize("operation", sorted(SINGLE_OPERATIONS))
def test_each_operation_with_probability_one_changes_the_images(images, operation):
    augmented = _augment(_settings(**SINGLE_OPERATIONS[operation]), images)

    per_image_change = np.abs(augmented - images.numpy()).mean(axis=(1, 2, 3))
    assert per_image_change.mean() > 0.005
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0


def test_rotation_is_a_multiple_of_90_degrees(images):
    augmented = _augment(_settings(rotate90_probability=1.0), images)

    for index in range(IMAGE_COUNT):
        rotations = [np.rot90(images[index].numpy(), turns) for turns in (1, 2, 3)]
        assert any(np.array_equal(augmented[index], rotation) for rotation in rotations)


def test_grayscale_gives_equal_channels(images):
    augmented = _augment(_settings(grayscale_probability=1.0), images)

    np.testing.assert_array_equal(augmented[..., 0], augmented[..., 1])
    np.testing.assert_array_equal(augmented[..., 0], augmented[..., 2])


def test_compiles_with_xla(images):
    augmenter = augment.build_pretrain_augmenter(ALL_OPERATIONS, IMAGE_SIZE, SEED)
    augment_step = tf.function(lambda batch: augmenter(batch, training=True), jit_compile=True)

    augmented = augment_step(images).numpy()

    assert augmented.shape == images.shape
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0


def test_mirrored_strategy_replicas_draw_different_augmentations(images):
    strategy = tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("CPU")])
    with strategy.scope():
        augmenter = augment.build_pretrain_augmenter(ALL_OPERATIONS, IMAGE_SIZE, SEED)
    copies = tf.repeat(images[:1], 2 * strategy.num_replicas_in_sync, axis=0)
    batches = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(copies))

    @tf.function
    def augment_step(batch):
        return strategy.run(lambda replica_batch: augmenter(replica_batch, training=True), args=(batch,))

    outputs = strategy.experimental_local_results(augment_step(next(iter(batches))))

    replica_outputs = [output.numpy() for output in outputs]

    assert all(output.shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3) for output in replica_outputs)
    first_images = {output[0].tobytes() for output in replica_outputs}
    assert len(first_images) == strategy.num_replicas_in_sync


@pytest.mark.parametrize(
    "settings, message",
    [
        ({**NO_AUGMENTATION, "sharpness": 0.5}, "sharpness"),
        ({key: value for key, value in NO_AUGMENTATION.items() if key != "hue"}, "hue"),
        (_settings(flip_probability=1.5), "flip_probability"),
        (_settings(crop_scale_min=0.9, crop_scale_max=0.5), "crop_scale_min"),
    ],
)
def test_invalid_settings_are_rejected(settings, message):
    with pytest.raises(ValueError, match=message):
        augment.build_augmenter(settings, IMAGE_SIZE, SEED, name="invalid")


def test_wrong_image_size_is_rejected(images):
    augmenter = augment.build_pretrain_augmenter({}, 2 * IMAGE_SIZE, SEED)

    with pytest.raises(ValueError, match="expects images of shape"):
        augmenter(images, training=True)


def _reference_blur(image: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """Separable Gaussian blur of one (height, width, channels) image with reflected borders, in numpy."""
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2.0 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(image, [(radius, radius), (radius, radius), (0, 0)], mode="reflect")
    height, width = image.shape[:2]
    vertical = sum(weight * padded[tap : tap + height] for tap, weight in enumerate(kernel))
    return sum(weight * vertical[:, tap : tap + width] for tap, weight in enumerate(kernel))


def test_blur_applies_each_images_own_gaussian(images):
    sigmas = np.linspace(0.5, 2.0, IMAGE_COUNT).astype(np.float32)
    radius = augment.blur_radius(4 * IMAGE_SIZE)  # 6 taps each side: wider than the 32-pixel kernel

    blurred = augment._gaussian_blur(images, tf.constant(sigmas), radius).numpy()

    for index, sigma in enumerate(sigmas):
        expected = _reference_blur(images[index].numpy(), float(sigma), radius)
        np.testing.assert_allclose(blurred[index], expected, atol=1e-5)


def test_config_round_trip_rebuilds_the_same_augmenter(images):
    augmenter = augment.build_pretrain_augmenter(ALL_OPERATIONS, IMAGE_SIZE, SEED)

    rebuilt = augment.ImageAugmenter.from_config(augmenter.get_config())

    assert rebuilt.name == augmenter.name
    np.testing.assert_array_equal(rebuilt(images, training=True).numpy(), augmenter(images, training=True).numpy())
