"""Reading an Examples artifact's splits as tf.data pipelines, and the one image decoder.

The examples are tf.Examples with an encoded image (JPEG/PNG/GIF/BMP bytes) and an int64 label under
the feature keys `FeatureKeys` names (`training.image_feature`, `training.label_feature`; selfsup's
ImageExampleGen writes `image` and `label`). Which splits to read is trainer/examples.py's business.

Every image, in training and in the exported model, goes through `decode_image_uint8`, so what
the model is trained on and what it serves are decoded and resized the same way. A training stage decodes each
image once, not once per epoch, where its decoded images fit `training.decode_cache_mb` (`DecodeCache`).
"""

import atexit
import dataclasses
import hashlib
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from trainer import log
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
# Images are decoded this many at a time (one parallel map call); the shuffle buffer holds at most
# SHUFFLE_BUFFER_IMAGES decoded images and at most SHUFFLE_BUFFER_BYTES of them.
DECODE_BATCH = 256
SHUFFLE_BUFFER_IMAGES = 10_000
SHUFFLE_BUFFER_BYTES = 256 * 2**20
LOG = log.get(__name__)


@dataclasses.dataclass(frozen=True)
class FeatureKeys:
    """The tf.Example feature keys of the encoded image (bytes) and the integer label (int64)."""

    image: str = IMAGE_FEATURE
    label: str = LABEL_FEATURE


def decode_image_uint8(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes JPEG/PNG/GIF/BMP bytes to uint8 (image_size, image_size, 3).

    Grayscale and palette images get 3 channels, RGBA drops alpha, an animated GIF gives
    its first frame; any size is resized (bilinear, antialiased, aspect ratio not kept) and rounded to uint8,
    so a cached image (`DecodeCache`) is exactly what serving decodes. An image already image_size x image_size
    keeps its pixels.
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    resized = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size], antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def to_float(images: tf.Tensor) -> tf.Tensor:
    """uint8 images -> float32 in [0, 1], what the encoders take."""
    return tf.cast(images, tf.float32) / 255.0


def decode_image(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes JPEG/PNG/GIF/BMP bytes to float32 (image_size, image_size, 3) in [0, 1] (`decode_image_uint8`)."""
    return to_float(decode_image_uint8(encoded, image_size))


def decode_uint8_batch(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """(B,) encoded strings -> (B, image_size, image_size, 3) uint8."""
    return tf.map_fn(
        lambda one: decode_image_uint8(one, image_size),
        encoded,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8),
    )


def decode_image_batch(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """(B,) encoded strings -> (B, image_size, image_size, 3) float32 in [0, 1]."""
    return to_float(decode_uint8_batch(encoded, image_size))


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
        # One order for the whole run, so that a pass over the files is the pass the decode cache replays.
        files = files.shuffle(len(files), seed=seed, reshuffle_each_iteration=False)
    return files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=4,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,  # the same order on every worker, so DATA sharding splits each global batch exactly
    )


@dataclasses.dataclass(frozen=True)
class DecodeCache:
    """Where a dataset's decoded images are kept after its first pass, so that later epochs decode no image.

    A dataset whose decoded images (uint8, images x image_size^2 x 3 bytes) fit `memory_bytes` is cached in
    memory; a larger one in a file under `directory` (deleted when the process ends) when one is given, else it
    is decoded again every epoch. The budget is per dataset: a stage holds a few (its train batches, the labeled
    and eval splits it monitors). `from_config` reads `training.decode_cache_mb` and `training.decode_cache_dir`.
    """

    memory_bytes: int
    directory: Optional[str] = None

    @classmethod
    def from_config(cls, config) -> "DecodeCache":
        return cls(config.decode_cache_mb * 2**20, config.decode_cache_dir)

    def apply(self, decoded: tf.data.Dataset, images: Optional[int], image_size: int, name: str) -> tf.data.Dataset:
        """`decoded` (one element per image) cached after its first pass, where `images` of them fit.

        Args:
          images: how many images `decoded` holds (the split sizes; None when unknown: not held in memory).
          name: what the dataset is, for the log line.
        """
        decoded_bytes = None if images is None else images * image_size * image_size * 3
        if decoded_bytes is not None and decoded_bytes <= self.memory_bytes:
            LOG.info(f"decode cache: {name}, {images} decoded images ({decoded_bytes / 2**20:.1f} MB) in memory")
            return decoded.cache()
        if self.directory:
            os.makedirs(self.directory, exist_ok=True)
            folder = tempfile.mkdtemp(prefix="selfsup-decoded-", dir=self.directory)
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            LOG.info(f"decode cache: {name}, decoded images in {folder}")
            return decoded.cache(os.path.join(folder, "images"))
        size = "an unknown number of" if images is None else f"{decoded_bytes / 2**20:.1f} MB of"
        LOG.info(f"decode cache: {name}, {size} decoded images exceed training.decode_cache_mb "
                 f"({self.memory_bytes // 2**20} MB) and no training.decode_cache_dir is set: decoded every epoch")
        return decoded


def shuffle_buffer_images(image_size: int) -> int:
    """How many decoded images the shuffle buffer holds: SHUFFLE_BUFFER_IMAGES, fewer for large images."""
    return max(1, min(SHUFFLE_BUFFER_IMAGES, SHUFFLE_BUFFER_BYTES // (image_size * image_size * 3)))


def batches(
    file_patterns: Sequence[str], batch_size: int, image_size: int, seed: int, shuffle: bool, *, with_labels: bool,
    full_batches: bool, keep_paths: Optional[Sequence[bytes]] = None, keys: FeatureKeys = FeatureKeys(),
    cache: Optional[DecodeCache] = None, images: Optional[int] = None, name: str = "images",
) -> tf.data.Dataset:
    """The one pipeline from TFRecords to decoded batches (`image_dataset` and `labeled_dataset` call it).

    Streams from the files (in a shuffled order with `shuffle`); keeps only the examples whose budget key is in
    `keep_paths` (label_budget_paths) when given; decodes to uint8; keeps the decoded images after the first pass
    where `cache` says (`DecodeCache.apply`, with `images` of them, logged as `name`); shuffles within a buffer of
    decoded images (`shuffle_buffer_images`) with `shuffle`, in a new order every pass; batches (dropping a last,
    smaller batch with `full_batches`), converts to float, prefetches. Batches are images (B, H, W, 3) float32 in
    [0, 1], or with `with_labels` (images, labels (B,) int64, UNLABELED_LABEL for unlabeled images).

    A cached dataset must be read to its end before it is read again (Keras epochs do; `take` does not).
    """
    examples = records(file_patterns, shuffle, seed)
    if keep_paths is not None:
        kept = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(keep_paths), tf.string),
                                                tf.ones(len(keep_paths), tf.int32)), default_value=0)
        examples = examples.filter(lambda record: kept.lookup(budget_keys(record[tf.newaxis], keys)[0]) > 0)

    def decode(batch: tf.Tensor):
        features = parse_examples(batch, keys)
        images = decode_uint8_batch(features[IMAGE_FEATURE], image_size)
        return (images, features[LABEL_FEATURE]) if with_labels else images

    decoded = examples.batch(DECODE_BATCH).map(decode, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    if cache is not None:
        decoded = cache.apply(decoded, images, image_size, name)
    if shuffle:
        decoded = decoded.shuffle(shuffle_buffer_images(image_size), seed=seed, reshuffle_each_iteration=True)

    def convert(*batch):
        return (to_float(batch[0]), batch[1]) if with_labels else to_float(batch[0])

    return (
        decoded.batch(batch_size, drop_remainder=full_batches)
        .map(convert, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def image_dataset(
    file_patterns: Sequence[str], batch_size: int, image_size: int, seed: int, shuffle: bool = True,
    with_labels: bool = False, keys: FeatureKeys = FeatureKeys(), cache: Optional[DecodeCache] = None,
    images: Optional[int] = None, name: str = "images",
) -> tf.data.Dataset:
    """Batches of images (batch_size, H, W, 3) float32 for pretraining, full batches only; with
    `with_labels`, (images, labels (batch_size,) int64) with -1 for unlabeled images (`batches`; `cache`,
    `images` and `name` as there)."""
    return batches(file_patterns, batch_size, image_size, seed, shuffle, with_labels=with_labels, full_batches=True,
                   keys=keys, cache=cache, images=images, name=name)


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
    cache: Optional[DecodeCache] = None, images: Optional[int] = None, name: str = "labeled images",
) -> tf.data.Dataset:
    """(images (B, H, W, 3) float32, labels (B,) int64) batches; the last batch may be smaller (`batches`; `cache`,
    `images` and `name` as there).

    With `keep_paths` (label_budget_paths), only the examples whose budget key is in it.
    """
    return batches(file_patterns, batch_size, image_size, seed, shuffle, with_labels=True, full_batches=False,
                   keep_paths=keep_paths, keys=keys, cache=cache, images=images, name=name)


def unlabeled_and_labeled_batches(unlabeled_and_train_files: Sequence[str], train_files: Sequence[str],
                                  unlabeled_batch_size: int, labeled_batch_size: int, image_size: int, seed: int,
                                  keep_paths: Optional[Sequence[bytes]] = None,
                                  keys: FeatureKeys = FeatureKeys(), cache: Optional[DecodeCache] = None,
                                  sizes: Optional[Tuple[int, int]] = None) -> tf.data.Dataset:
    """The batches of the semi-supervised stages (trainer/distill.py, trainer/fixmatch.py):
    `(unlabeled_images, (labeled_images, labels))`, endless on the labeled side.

    The unlabeled side is the unlabeled and the train images (`unlabeled_and_train_files`, their labels
    ignored), full batches, one pass per epoch (`semi_supervised_steps`); the labeled side is the train images
    (`train_files`) of the label budget (`keep_paths`; None for every train label) in full batches, repeated as
    often as needed (the train split is much smaller). `cache` is `batches`'; `sizes` (unlabeled and train
    images, labeled images) are what the two sides hold.
    """
    unlabeled_images, labeled_images = sizes or (None, None)
    unlabeled = image_dataset(unlabeled_and_train_files, unlabeled_batch_size, image_size, seed, keys=keys,
                              cache=cache, images=unlabeled_images, name="unlabeled and train images")
    labeled = (labeled_dataset(train_files, labeled_batch_size, image_size, seed, shuffle=True,
                               keep_paths=keep_paths, keys=keys, cache=cache, images=labeled_images,
                               name="labeled train images")
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
