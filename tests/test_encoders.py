"""Tests of trainer.encoders."""

import numpy as np
import pytest

from trainer import encoders
from trainer.hparams import ENCODERS

WIDTH = 16
BATCH_SIZE = 2


def _images(image_size: int) -> np.ndarray:
    """(2, image_size, image_size, 3) random float32 images in [0, 1]."""
    return np.random.default_rng(0).random((BATCH_SIZE, image_size, image_size, 3), dtype=np.float32)


@pytest.mark.parametrize(
    "name, image_size, feature_shape",
    [
        ("small_cnn", 32, (WIDTH,)),
        ("small_cnn", 40, (WIDTH,)),
        ("resnet18_cifar", 32, (4 * WIDTH,)),
        ("resnet18_cifar", 8, (4 * WIDTH,)),
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
