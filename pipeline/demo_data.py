"""The built-in demo dataset: scikit-learn's handwritten digits written as an image folder.

1,797 real 8x8 grayscale scans of the digits 0-9 (bundled with scikit-learn, nothing is
downloaded), laid out as selfsup expects:
    DIR/labeled/<digit>/NNNN.png    `labeled_per_class` images per class
    DIR/test/<digit>/NNNN.png       `test_per_class` images per class
    DIR/unlabeled/NNNN.png          all the others, without labels

`write_digits_tfrecords` writes the same scans as TFRecords of labeled tf.Examples instead, as a TFX user's
own data would be (what docs/own_pipeline.md feeds TFX's ImportExampleGen).
"""

import io
import os

import numpy as np
from PIL import Image

from components.image_example_gen.folder_layout import LABELED_FOLDER, TEST_FOLDER, UNLABELED_FOLDER
from trainer.contract import IMAGE_FEATURE, LABEL_FEATURE


def write_digits_dataset(root: str, labeled_per_class: int = 5, test_per_class: int = 30, seed: int = 0) -> dict:
    """Writes the digits into `root` (created if missing); returns the number of images per split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    taken = {label: 0 for label in range(10)}
    counts = {LABELED_FOLDER: 0, TEST_FOLDER: 0, UNLABELED_FOLDER: 0}
    for index in order:
        label = int(digits.target[index])
        if taken[label] < labeled_per_class:
            folder, split = os.path.join(root, LABELED_FOLDER, str(label)), LABELED_FOLDER
        elif taken[label] < labeled_per_class + test_per_class:
            folder, split = os.path.join(root, TEST_FOLDER, str(label)), TEST_FOLDER
        else:
            folder, split = os.path.join(root, UNLABELED_FOLDER), UNLABELED_FOLDER
        taken[label] += 1
        counts[split] += 1
        os.makedirs(folder, exist_ok=True)
        pixels = np.clip(digits.images[index] * (255.0 / 16.0), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(os.path.join(folder, f"{index:04d}.png"))
    return counts


def write_digits_tfrecords(root: str, image_feature: str = IMAGE_FEATURE, label_feature: str = LABEL_FEATURE,
                           files: int = 2) -> int:
    """Writes every digit as a tf.Example (its PNG bytes under `image_feature`, the digit as an int64 under
    `label_feature`) into `files` uncompressed TFRecord files `root/digits-0000N-of-0000M.tfrecord`;
    returns how many examples it wrote."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    os.makedirs(root, exist_ok=True)
    writers = [tf.io.TFRecordWriter(os.path.join(root, f"digits-{number:05d}-of-{files:05d}.tfrecord"))
               for number in range(files)]
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        encoded = io.BytesIO()
        Image.fromarray(np.clip(pixels * (255.0 / 16.0), 0, 255).astype(np.uint8), mode="L").save(encoded, "PNG")
        example = tf.train.Example(features=tf.train.Features(feature={
            image_feature: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded.getvalue()])),
            label_feature: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        }))
        writers[index % files].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return len(digits.target)
