"""Reading the ImageExampleGen splits as tf.data pipelines, and the one image decoder.

Every image, in training and in the exported model, goes through `decode_image`, so what
the model is trained on and what it serves are decoded and resized the same way.
"""

import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

IMAGE_FEATURE, LABEL_FEATURE, PATH_FEATURE = "image", "label", "path"
CLASS_NAMES_FILE = "class_names.json"
_FEATURE_SPEC = {
    IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string),
    LABEL_FEATURE: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
}
_PATH_SPEC = {
    PATH_FEATURE: tf.io.FixedLenFeature([], tf.string, default_value=""),
    LABEL_FEATURE: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
}


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


def parse_examples(serialized: tf.Tensor) -> dict:
    """(B,) serialized tf.Examples -> {"image": (B,) string, "label": (B,) int64}."""
    return tf.io.parse_example(serialized, _FEATURE_SPEC)


def examples_root(split_file_patterns: Sequence[str]) -> str:
    """The Examples artifact folder from a split's file pattern (URI/Split-train/*)."""
    return os.path.dirname(os.path.dirname(split_file_patterns[0].rstrip("/")))


def split_files(examples_uri: str, split: str) -> List[str]:
    return [os.path.join(examples_uri, f"Split-{split}", "*")]


def read_class_names(examples_uri: str) -> List[str]:
    """The class names ImageExampleGen recorded beside the splits (label i is class_names[i])."""
    path = os.path.join(examples_uri, CLASS_NAMES_FILE)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{path} is missing: the examples were not written by selfsup's ImageExampleGen")
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def _records(file_patterns: Sequence[str], shuffle: bool, seed: int) -> tf.data.Dataset:
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


def image_dataset(
    file_patterns: Sequence[str], batch_size: int, image_size: int, seed: int, shuffle: bool = True,
    with_labels: bool = False,
) -> tf.data.Dataset:
    """Batches of images (batch_size, H, W, 3) float32 for pretraining, full batches only; with
    `with_labels`, (images, labels (batch_size,) int64) with -1 for unlabeled images.

    Streams from the files; shuffles within a 10,000-image buffer.
    """
    records = _records(file_patterns, shuffle, seed)
    if shuffle:
        records = records.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)

    def decode(batch: tf.Tensor):
        features = parse_examples(batch)
        images = decode_image_batch(features[IMAGE_FEATURE], image_size)
        return (images, features[LABEL_FEATURE]) if with_labels else images

    return (
        records.batch(batch_size, drop_remainder=True)
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def label_budget_paths(file_patterns: Sequence[str], labels_per_class: int) -> List[bytes]:
    """The `path`s of the images a label budget keeps: per class, the `labels_per_class` images whose
    path has the smallest SHA-256. The choice depends only on the paths, so it is the same on every
    machine and for both Trainers, and nested: a smaller budget keeps a subset of a larger one's images.
    """
    by_class: Dict[int, List[Tuple[bytes, bytes]]] = {}
    records = _records(file_patterns, shuffle=False, seed=0).batch(1024).map(
        lambda batch: tf.io.parse_example(batch, _PATH_SPEC))
    for batch in records.as_numpy_iterator():
        for path, label in zip(batch[PATH_FEATURE], batch[LABEL_FEATURE]):
            by_class.setdefault(int(label), []).append((hashlib.sha256(path).digest(), path))
    return sorted(path for ranked in by_class.values() for _, path in sorted(ranked)[:labels_per_class])


def labeled_dataset(
    file_patterns: Sequence[str], batch_size: int, image_size: int, seed: int, shuffle: bool,
    keep_paths: Optional[Sequence[bytes]] = None,
) -> tf.data.Dataset:
    """(images (B, H, W, 3) float32, labels (B,) int64) batches; the last batch may be smaller.

    With `keep_paths` (label_budget_paths), only the examples whose `path` is in it.
    """
    records = _records(file_patterns, shuffle, seed)
    if keep_paths is not None:
        kept = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(keep_paths), tf.string),
                                                tf.ones(len(keep_paths), tf.int32)), default_value=0)
        records = records.filter(
            lambda record: kept.lookup(tf.io.parse_single_example(record, _PATH_SPEC)[PATH_FEATURE]) > 0)
    if shuffle:
        records = records.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)

    def decode(batch: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        features = parse_examples(batch)
        return decode_image_batch(features[IMAGE_FEATURE], image_size), features[LABEL_FEATURE]

    return records.batch(batch_size).map(decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def unlabeled_and_labeled_batches(examples_uri: str, unlabeled_batch_size: int, labeled_batch_size: int,
                                  image_size: int, seed: int,
                                  keep_paths: Optional[Sequence[bytes]] = None) -> tf.data.Dataset:
    """The batches of the semi-supervised stages (trainer/distill.py, trainer/fixmatch.py):
    `(unlabeled_images, (labeled_images, labels))`, endless on the labeled side.

    The unlabeled side is the unlabeled and the train images (their labels ignored), full batches,
    one pass per epoch (`semi_supervised_steps`); the labeled side is the train images of the label budget
    (`keep_paths`; None for every train label) in full batches, repeated as often as needed (the train
    split is much smaller).
    """
    unlabeled = image_dataset(split_files(examples_uri, "unlabeled") + split_files(examples_uri, "train"),
                              unlabeled_batch_size, image_size, seed)
    labeled = (labeled_dataset(split_files(examples_uri, "train"), labeled_batch_size, image_size, seed,
                               shuffle=True, keep_paths=keep_paths)
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
