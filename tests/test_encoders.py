"""Tests of trainer.encoders."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from image_samples import GOOD_IMAGES, encode

from trainer import encoders, keras_fixes
from trainer.data import decode_image
from trainer.export import SERVING_IMAGES_SIGNATURE, export_classifier
from trainer.finetune import build_classifier
from trainer.hparams import ENCODERS, TrainingConfig
from trainer.methods import build_method

WIDTH = 16
BATCH_SIZE = 2


def _images(image_size: int, count: int = BATCH_SIZE) -> np.ndarray:
    """(count, image_size, image_size, 3) random float32 images in [0, 1]."""
    return np.random.default_rng(0).random((count, image_size, image_size, 3), dtype=np.float32)


@pytest.mark.parametrize(
    "name, image_size, feature_shape",
    [
        ("small_cnn", 32, (WIDTH,)),
        ("small_cnn", 40, (WIDTH,)),
        ("resnet18_cifar", 32, (4 * WIDTH,)),
        ("resnet18_cifar", 8, (4 * WIDTH,)),
        ("resnet10_cifar", 32, (2 * WIDTH,)),
        ("resnet10_cifar", 8, (2 * WIDTH,)),
        ("resnet10_cifar", 13, (2 * WIDTH,)),
        ("sequence_cnn", 32, (8, WIDTH)),
        ("sequence_cnn", 8, (2, WIDTH)),
        ("sequence_cnn", 36, (9, WIDTH)),
        ("sequence_cnn", 10, (3, WIDTH)),
        ("resnet50", 32, (2048,)),
        ("efficientnet_b0", 32, (1280,)),
    ],
)
def test_output_shapes(name, image_size, feature_shape):
    encoder = encoders.build_encoder(name, image_size, width=WIDTH)

    features = encoder(_images(image_size), training=False)

    assert tuple(features.shape) == (BATCH_SIZE, *feature_shape)
    assert np.all(np.isfinite(np.asarray(features)))


@pytest.mark.parametrize("name", ENCODERS)
def test_only_sequence_cnn_outputs_sequences(name):
    assert encoders.encoder_outputs_sequence(name) == (name == "sequence_cnn")


def test_sequence_cnn_gives_rank_3_features():
    encoder = encoders.build_encoder("sequence_cnn", 32, width=WIDTH)

    assert len(encoder.output.shape) == 3


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "small_cnn"])
def test_imagenet_weights_are_rejected(name):
    with pytest.raises(ValueError, match="download.*local weights file"):
        encoders.build_encoder(name, 32, weights="imagenet")


def test_missing_weights_file_is_rejected(tmp_path):
    missing = str(tmp_path / "missing.h5")

    with pytest.raises(ValueError, match="missing.h5.*does not exist"):
        encoders.build_encoder("resnet50", 32, weights=missing)


def test_local_weights_file_is_loaded(tmp_path):
    weights_path = str(tmp_path / "small_cnn.weights.h5")
    trained = encoders.build_encoder("small_cnn", 32, width=WIDTH)
    trained.save_weights(weights_path)

    restored = encoders.build_encoder("small_cnn", 32, width=WIDTH, weights=weights_path)

    np.testing.assert_allclose(np.asarray(restored(_images(32))), np.asarray(trained(_images(32))))


def test_unknown_name_is_rejected():
    with pytest.raises(ValueError, match="'vit_tiny'"):
        encoders.build_encoder("vit_tiny", 32)
    with pytest.raises(ValueError, match="'vit_tiny'"):
        encoders.encoder_outputs_sequence("vit_tiny")


@pytest.mark.parametrize("name, image_size", [("resnet50", 16), ("efficientnet_b0", 16), ("small_cnn", 31)])
def test_too_small_images_are_rejected(name, image_size):
    with pytest.raises(ValueError, match=f"at least .*got {image_size}"):
        encoders.build_encoder(name, image_size)


def test_too_small_width_is_rejected():
    with pytest.raises(ValueError, match="width"):
        encoders.build_encoder("resnet18_cifar", 32, width=1)


# --- resnet10_cifar: trains under the default and the mirrored strategy, exports, serves ------------

def test_resnet10_cifar_stage_widths_follow_the_width():
    encoder = encoders.build_encoder("resnet10_cifar", 32, width=128)

    assert [encoder.get_layer(f"stage{stage}_add").output.shape[-1] for stage in (1, 2, 3)] == [64, 128, 256]
    assert encoder.get_layer("stem").output.shape[-1] == 32
    assert tuple(encoder.get_layer("stage3_add").output.shape[1:3]) == (4, 4)
    assert tuple(encoder.output.shape) == (None, 256)


def _simclr_step(strategy, batch):
    """One SimCLR step of resnet10_cifar (identity augmentation) under `strategy`.

    Returns:
      (loss, weights before, weights after, variable paths).
    """
    config = TrainingConfig(encoder="resnet10_cifar", encoder_width=WIDTH, image_size=16, projection_dim=8,
                            projection_hidden_dim=8)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        encoder = encoders.build_encoder(config.encoder, config.image_size, config.encoder_width)
        model = build_method(config, encoder, keras.layers.Identity(), False, make_encoder=None, steps_per_epoch=1)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = [np.array(weight) for weight in encoder.get_weights()]
    history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    return history.history["loss"][0], before, encoder.get_weights(), [weight.path for weight in encoder.weights]


def _assert_step_trained(loss, before, after, paths):
    assert np.isfinite(loss)
    changed = {path for path, old, new in zip(paths, before, after) if not np.allclose(old, new)}
    assert any(path.endswith("stage3_residual2/kernel") for path in changed), sorted(changed)
    # Batch norm's moving statistics follow the batch too.
    assert any(path.endswith("stage1_norm/moving_mean") for path in changed), sorted(changed)


def test_resnet10_cifar_trains_a_step_under_the_default_strategy():
    _assert_step_trained(*_simclr_step(tf.distribute.get_strategy(), _images(16, count=8)))


def test_resnet10_cifar_trains_a_step_under_the_mirrored_strategy():
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices; TensorFlow was initialised before conftest.py ran")
    keras_fixes.check_keras_version()  # even batches of images: fit needs no fix (trainer/keras_fixes.py)
    # Its own collective key range, away from other test modules' MirroredStrategy (see test_distribute.py).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tf.distribute.MirroredStrategy, "_collective_key_base", 2_000_000)
        strategy = tf.distribute.MirroredStrategy([device.name for device in devices[:2]])
    assert strategy.num_replicas_in_sync == 2

    _assert_step_trained(*_simclr_step(strategy, _images(16, count=8)))


def test_resnet10_cifar_classifier_exports_and_serves(tmp_path):
    keras.utils.set_random_seed(1)
    classifier = build_classifier(encoders.build_encoder("resnet10_cifar", 32, width=WIDTH), 3, 32,
                                  is_sequence=False)
    export_dir = str(tmp_path / "Format-Serving")
    export_classifier(classifier, ["a", "b", "c"], 32, export_dir)

    loaded = tf.saved_model.load(export_dir)
    jpegs = [encode("RGB", size=(32, 32), image_format="PNG"), GOOD_IMAGES["rgb jpeg"]()]
    served = loaded.signatures[SERVING_IMAGES_SIGNATURE](images=tf.constant(jpegs))

    decoded = tf.stack([decode_image(jpeg, 32) for jpeg in jpegs])
    np.testing.assert_allclose(served["probabilities"].numpy(), classifier(decoded, training=False).numpy(),
                               atol=1e-5)
    assert served["class_ids"].shape == (2,)


# --- forward_flops ---------------------------------------------------------------------------------

def test_forward_flops_of_small_cnn_matches_a_hand_count():
    width = 128
    # "valid" 3x3 stride-2 convolutions: 32 -> 15 -> 7 -> 3 -> 1 pixels; then Dense(width) on width inputs.
    multiply_adds = (15 * 15 * width * 3 * 3 * 3 + 7 * 7 * width * 3 * 3 * width + 3 * 3 * width * 3 * 3 * width
                     + 1 * 1 * width * 3 * 3 * width + width * width)

    flops = encoders.forward_flops(encoders.build_encoder("small_cnn", 32, width=width))

    assert flops == 2 * multiply_adds
    assert round(flops / 1e6, 1) == 19.0


def test_forward_flops_of_resnet10_cifar_matches_a_hand_count():
    # Stem 32 filters at 32x32; each stage's first conv runs before its pool (32, 16, 8 pixels), its
    # residual convs after it (16, 8, 4 pixels), with 64, 128, 256 filters.
    stem = 32 * 32 * 32 * 3 * 3 * 3
    stages = [(32, 16, 32, 64), (16, 8, 64, 128), (8, 4, 128, 256)]
    stage_multiply_adds = sum(size * size * filters * 9 * inputs + 2 * pooled * pooled * filters * 9 * filters
                              for size, pooled, inputs, filters in stages)

    flops = encoders.forward_flops(encoders.build_encoder("resnet10_cifar", 32, width=128))

    assert flops == 2 * (stem + stage_multiply_adds)


def test_forward_flops_counts_nested_application_backbones():
    flops = encoders.forward_flops(encoders.build_encoder("efficientnet_b0", 32))

    # EfficientNet-B0 does 0.39 G multiply-adds at 224x224 (the paper's "FLOPS"); 32x32 images have 49 times
    # fewer pixels: about 8 M multiply-adds, 16 MFLOP.
    assert 12e6 < flops < 20e6
