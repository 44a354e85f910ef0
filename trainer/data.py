"""Reading an Examples artifact's splits as tf.data pipelines, and the one image decoder.

The examples are tf.Examples with an encoded image (JPEG/PNG/GIF/BMP bytes) and an int64 label under
the feature keys `FeatureKeys` names (`training.image_feature`, `training.label_feature`; selfsup's
ImageExampleGen writes `image` and `label`). Which splits to read is trainer/examples.py's business.

Every image, in training and in the exported model, goes through `decode_image`, so what
the model is trained on and what it serves are decoded and resized the same way.
"""

import dataclasses
import hashlib
import os
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from trainer.contract import (
    IMAGE_FEATURE,
    LABEL_FEATURE,
    PATH_FEATURE,
    SPLIT_FOLDER_PREFIX,
    UNLABELED_LABEL,
)

# The label budget's key of an example: its PATH_FEATURE (ImageExampleGen's: where the image came from), or for
# an example without one this prefix and the FarmHash64 of its encoded image (`budget_keys`).
IMAGE_HASH_KEY_PREFIX = "image-farmhash64:"
_INT64_MAX = 2**63 - 1


@dataclasses.dataclass(frozen=True)
class FeatureKeys:
    """The tf.Example feature keys of the encoded image (bytes) and the integer label (int64)."""

    image: str = IMAGE_FEATURE
    label: str = LABEL_FEATURE


def decode_image(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes JPEG/PNG/GIF/BMP bytes to float32 (image_size, image_size, 3) in [0, 1].

    Grayscale and palette images get 3 channels, RGBA drops alpha, an animated GIF gives
    its first frame; any size is resized (bilinear, aspect ratio not kept).
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, [image_size, image_size], antialias=True)
    return tf.clip_by_value(image, 0.0, 1.0)


def decode_image_batch(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """(B,) encoded strings -> (B, image_size, image_size, 3) float32 in [0, 1]."""
    return tf.map_fn(
        lambda one: decode_image(one, image_size),
        encoded,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
    )


def parse_examples(serialized: tf.Tensor, keys: FeatureKeys = FeatureKeys()) -> dict:
    """(B,) serialized tf.Examples -> {IMAGE_FEATURE: (B,) string, LABEL_FEATURE: (B,) int64} whatever `keys`
    names them; the label is UNLABELED_LABEL (-1) where an example has none."""
    parsed = tf.io.parse_example(serialized, {
        keys.image: tf.io.FixedLenFeature([], tf.string),
        keys.label: tf.io.FixedLenFeature([], tf.int64, default_value=UNLABELED_LABEL),
    })
    return {IMAGE_FEATURE: parsed[keys.image], LABEL_FEATURE: parsed[keys.label]}


def parse_labels(serialized: tf.Tensor, keys: FeatureKeys = FeatureKeys()) -> tf.Tensor:
    """(B,) serialized tf.Examples -> (B,) int64 labels, UNLABELED_LABEL (-1) where an example has none."""
    spec = {keys.label: tf.io.FixedLenFeature([], tf.int64, default_value=UNLABELED_LABEL)}
    return tf.io.parse_example(serialized, spec)[keys.label]


def budget_keys(serialized: tf.Tensor, keys: FeatureKeys = FeatureKeys()) -> tf.Tensor:
    """(B,) serialized tf.Examples -> (B,) string: each example's key for the label budget, its `path` feature
    (ImageExampleGen's), or for an example without one IMAGE_HASH_KEY_PREFIX and the FarmHash64 of its
    encoded image bytes (the same on every machine; byte-identical images share a key). The one definition of an
    example's key: `label_budget_paths` ranks these keys and `labeled_dataset` filters by them."""
    parsed = tf.io.parse_example(serialized, {
        PATH_FEATURE: tf.io.FixedLenFeature([], tf.string, default_value=""),
        keys.image: tf.io.FixedLenFeature([], tf.string, default_value=""),
    })
    image_hashes = tf.strings.as_string(tf.strings.to_hash_bucket_fast(parsed[keys.image], _INT64_MAX))
    return tf.where(tf.strings.length(parsed[PATH_FEATURE]) > 0, parsed[PATH_FEATURE],
                    tf.strings.join([IMAGE_HASH_KEY_PREFIX, image_hashes]))


def examples_root(split_file_patterns: Sequence[str]) -> str:
    """The Examples artifact folder from a split's file pattern (URI/Split-train/*)."""
    return os.path.dirname(os.path.dirname(split_file_patterns[0].rstrip("/")))


def split_files(examples_uri: str, split: str) -> List[str]:
    return [os.path.join(examples_uri, f"{SPLIT_FOLDER_PREFIX}{split}", "*")]


def records(file_patterns: Sequence[str], shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    """The serialized tf.Examples of the gzipped TFRecord files matching `file_patterns` (TFX writes them so)."""
    files = []
    for pattern in file_patterns:
        files.extend(tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no TFRecord files match {list(file_patterns)}")
    files = tf.data.Dataset.from_tensor_slices(sorted(files))
    if shuffle:
        files = files.shuffle(len(files), seed=seed)
    return files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=4,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,  # the same order on every worker, so DATA sharding splits each global batch exactly
    )


def batches(
    file_patterns: Sequence[str], batch_size: int, image_size: int, seed: int, shuffle: bool, *, with_labels: bool,
    full_batches: bool, keep_paths: Optional[Sequence[bytes]] = None, keys: FeatureKeys = FeatureKeys(),
) -> tf.data.Dataset:
    """The one pipeline from TFRecords to decoded batches (`image_dataset` and `labeled_dataset` call it).

    Streams from the files (in a shuffled order with `shuffle`); keeps only the examples whose budget key is in
    `keep_paths` (label_budget_paths) when given; shuffles within a 10,000-image buffer with `shuffle`; batches
    (dropping a last, smaller batch with `full_batches`), decodes, prefetches. Batches are images (B, H, W, 3)
    float32 in [0, 1], or with `with_labels` (images, labels (B,) int64, UNLABELED_LABEL for unlabeled images).
    """
    examples = records(file_patterns, shuffle, seed)
    if keep_paths is not None:
        kept = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(keep_paths), tf.string),
                                                tf.ones(len(keep_paths), tf.int32)), default_value=0)
        examples = examples.filter(lambda record: kept.lookup(budget_keys(record[tf.newaxis], keys)[0]) > 0)
    if shuffle:
        examples = examples.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)

    def decode(batch: tf.Tensor):
        features = parse_examples(batch, keys)
        images = decode_image_batch(features[IMAGE_FEATURE], image_size)
        return (images, features[LABEL_FEATURE]) if with_labels else images

    return (
        examples.batch(batch_size, drop_remainder=full_batches)
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def image_dataset(
    file_patterns: Sequence[str], batch_size: int, image_size: int, seed: int, shuffle: bool = True,
    with_labels: bool = False, keys: FeatureKeys = FeatureKeys(),
) -> tf.data.Dataset:
    """Batches of images (batch_size, H, W, 3) float32 for pretraining, full batches only; with
    `with_labels`, (images, labels (batch_size,) int64) with -1 for unlabeled images (`batches`)."""
    return batches(file_patterns, batch_size, image_size, seed, shuffle, with_labels=with_labels, full_batches=True,
                   keys=keys)


def label_budget_paths(file_patterns: Sequence[str], labels_per_class: int,
                       keys: FeatureKeys = FeatureKeys()) -> List[bytes]:
    """The keys (`budget_keys`: the `path`, else a hash of the image) of the images a label budget keeps: per
    class, the `labels_per_class` images whose key has the smallest SHA-256. The choice depends only on the
    keys, so it is the same on every machine and for both Trainers, and nested: a smaller budget keeps a subset
    of a larger one's images.
    """
    by_class: Dict[int, List[Tuple[bytes, bytes]]] = {}
    keyed = records(file_patterns).batch(1024).map(
        lambda batch: (budget_keys(batch, keys), parse_labels(batch, keys)))
    for batch_keys, batch_labels in keyed.as_numpy_iterator():
        for key, label in zip(batch_keys, batch_labels):
            by_class.setdefault(int(label), []).append((hashlib.sha256(key).digest(), key))
    return sorted(key for ranked in by_class.values() for _, key in sorted(ranked)[:labels_per_class])


def labeled_dataset(
    file_patterns: Sequence[str], batch_size: int, image_size: int, seed: int, shuffle: bool,
    keep_paths: Optional[Sequence[bytes]] = None, keys: FeatureKeys = FeatureKeys(),
) -> tf.data.Dataset:
    """(images (B, H, W, 3) float32, labels (B,) int64) batches; the last batch may be smaller (`batches`).

    With `keep_paths` (label_budget_paths), only the examples whose budget key is in it.
    """
    return batches(file_patterns, batch_size, image_size, seed, shuffle, with_labels=True, full_batches=False,
                   keep_paths=keep_paths, keys=keys)


def unlabeled_and_labeled_batches(unlabeled_and_train_files: Sequence[str], train_files: Sequence[str],
                                  unlabeled_batch_size: int, labeled_batch_size: int, image_size: int, seed: int,
                                  keep_paths: Optional[Sequence[bytes]] = None,
                                  keys: FeatureKeys = FeatureKeys()) -> tf.data.Dataset:
    """The batches of the semi-supervised stages (trainer/distill.py, trainer/fixmatch.py):
    `(unlabeled_images, (labeled_images, labels))`, endless on the labeled side.

    The unlabeled side is the unlabeled and the train images (`unlabeled_and_train_files`, their labels
    ignored), full batches, one pass per epoch (`semi_supervised_steps`); the labeled side is the train images
    (`train_files`) of the label budget (`keep_paths`; None for every train label) in full batches, repeated as
    often as needed (the train split is much smaller).
    """
    unlabeled = image_dataset(unlabeled_and_train_files, unlabeled_batch_size, image_size, seed, keys=keys)
    labeled = (labeled_dataset(train_files, labeled_batch_size, image_size, seed, shuffle=True,
                               keep_paths=keep_paths, keys=keys)
               .unbatch().repeat().batch(labeled_batch_size, drop_remainder=True))
    return tf.data.Dataset.zip((unlabeled, labeled))


def semi_supervised_steps(sizes: Dict[str, int], unlabeled_batch_size: int) -> int:
    """Steps per epoch of a semi-supervised stage: one pass over the unlabeled and train images.

    Raises:
      ValueError: fewer unlabeled and train images than one batch.
    """
    images = sizes["unlabeled"] + sizes["train"]
    if images < unlabeled_batch_size:
        raise ValueError(
            f"config key 'training.batch_size': {unlabeled_batch_size} is larger than the {images} unlabeled and "
            "train images of the semi-supervised stages"
        )
    return images // unlabeled_batch_size
