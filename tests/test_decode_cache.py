"""The decode cache (trainer/data.py DecodeCache): later epochs decode no image, and the batches are the same."""

import glob
import io
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from trainer import data
from trainer.contract import UNLABELED_SPLIT

IMAGE_SIZE = 16
MB = 2**20


@pytest.fixture()
def unlabeled_copy(digits_examples_uri, tmp_path):
    """A copy of the digits' unlabeled split (1,597 images) that a test may delete."""
    folder = tmp_path / "records"
    shutil.copytree(os.path.dirname(data.split_files(digits_examples_uri, UNLABELED_SPLIT)[0]), folder)
    return [str(folder / "*")]


def passes(dataset, count=2):
    """The images of `count` complete passes over `dataset`, as Keras epochs read it (a new iterator each)."""
    return [np.concatenate([images.numpy() for images, _ in dataset]) for _ in range(count)]


def delete_records(patterns):
    for path in glob.glob(patterns[0]):
        os.remove(path)


def dataset(patterns, cache, images=1597):
    return data.image_dataset(patterns, 128, IMAGE_SIZE, seed=3, with_labels=True, cache=cache, images=images,
                              name="digits")


@pytest.mark.parametrize("cache_kind", ["memory", "file"])
def test_a_cached_dataset_gives_the_batches_an_uncached_one_gives_and_reads_no_record_after_the_first_pass(
        unlabeled_copy, tmp_path, cache_kind):
    uncached = passes(dataset(unlabeled_copy, cache=None))
    cache = (data.DecodeCache(64 * MB) if cache_kind == "memory"
             else data.DecodeCache(0, directory=str(tmp_path / "cache")))
    cached = dataset(unlabeled_copy, cache)
    first = passes(cached, 1)[0]
    delete_records(unlabeled_copy)
    second, third = passes(cached)
    # The same images in the same shuffled order as without the cache, and a new order every pass.
    np.testing.assert_array_equal(first, uncached[0])
    np.testing.assert_array_equal(second, uncached[1])
    assert first.shape == third.shape == (1536, IMAGE_SIZE, IMAGE_SIZE, 3) and not np.array_equal(second, third)
    if cache_kind == "file":
        assert glob.glob(str(tmp_path / "cache" / "selfsup-decoded-*" / "images*"))


def test_a_dataset_over_the_budget_without_a_folder_is_decoded_every_pass_and_says_so(unlabeled_copy, caplog):
    # 1,597 images of 16 x 16 x 3 bytes are 1.2 MB.
    with caplog.at_level(logging.INFO, logger="selfsup"):
        uncached = dataset(unlabeled_copy, data.DecodeCache(1 * MB))
    assert "decode cache: digits, 1.2 MB of decoded images exceed training.decode_cache_mb (1 MB)" in caplog.text
    passes(uncached, 1)
    delete_records(unlabeled_copy)
    with pytest.raises(tf.errors.NotFoundError):
        passes(uncached, 1)


def test_an_unknown_count_is_not_held_in_memory(unlabeled_copy):
    uncached = dataset(unlabeled_copy, data.DecodeCache(1024 * MB), images=None)
    passes(uncached, 1)
    delete_records(unlabeled_copy)
    with pytest.raises(tf.errors.NotFoundError):
        passes(uncached, 1)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_image_of_the_model_size_keeps_its_pixels_and_a_resized_one_is_what_serving_decodes():
    pixels = np.random.default_rng(0).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    np.testing.assert_array_equal(data.decode_image_uint8(tf.constant(png(pixels)), IMAGE_SIZE).numpy(), pixels)
    large = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    cached = data.decode_image_uint8(tf.constant(png(large)), IMAGE_SIZE)
    served = data.decode_image_batch(tf.constant([png(large)]), IMAGE_SIZE)[0]
    assert cached.dtype == tf.uint8 and cached.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    np.testing.assert_array_equal(data.to_float(cached).numpy(), served.numpy())


def test_the_shuffle_buffer_holds_fewer_large_images():
    assert data.shuffle_buffer_images(32) == data.SHUFFLE_BUFFER_IMAGES
    assert data.shuffle_buffer_images(224) == data.SHUFFLE_BUFFER_BYTES // (224 * 224 * 3)


def test_keras_epochs_after_the_first_read_the_cache_under_the_trainers_strategy(unlabeled_copy):
    import keras

    from trainer import distribute

    strategy = tf.distribute.get_strategy()
    batches = distribute.shard_by_data(dataset(unlabeled_copy, data.DecodeCache(64 * MB)))
    with strategy.scope():
        model = keras.Sequential([keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)), keras.layers.Flatten(),
                                  keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")  # the unlabeled images' labels are all -1
    delete_after_first = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: delete_records(unlabeled_copy))
    history = model.fit(batches, epochs=3, callbacks=[delete_after_first], verbose=0)
    assert len(history.history["loss"]) == 3 and not glob.glob(unlabeled_copy[0])
