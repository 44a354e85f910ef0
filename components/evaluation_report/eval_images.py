"""What the report reads from ImageExampleGen's examples: labels per class, and misclassified eval images.

Both models' `serving_default` signature (serialized tf.Examples -> `class_ids`, what TFMA and
PairedComparison feed) predicts the first `EXAMINED_EXAMPLES` eval examples, in the split's file order;
the first `SHOWN_PER_MODEL` that a model gets wrong are embedded as PNG thumbnails with their true and
predicted class.
"""

import base64
import io
import os
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf
from PIL import Image

from trainer.contract import (
    CLASS_IDS_OUTPUT,
    IMAGE_FEATURE,
    LABEL_FEATURE,
    PATH_FEATURE,
    SERVING_SIGNATURE,
    SPLIT_FOLDER_PREFIX,
)

EXAMINED_EXAMPLES = 500
SHOWN_PER_MODEL = 24
THUMBNAIL_PIXELS = 96  # the longer side of a thumbnail
_BATCH_SIZE = 128


def split_files(examples_uri: str, split: str) -> List[str]:
    """The gzip TFRecord files of one split of an Examples folder (TFX's `Split-<name>` layout)."""
    return sorted(tf.io.gfile.glob(os.path.join(examples_uri, SPLIT_FOLDER_PREFIX + split, "*")))


def images_per_class(example_files: List[str], class_names: List[str]) -> Dict[str, int]:
    """How many examples of each class the files hold (labels outside the class list are not counted)."""
    counts = np.zeros(len(class_names), np.int64)
    features = {LABEL_FEATURE: tf.io.FixedLenFeature([], tf.int64)}
    for batch in tf.data.TFRecordDataset(example_files, compression_type="GZIP").batch(1024):
        labels = tf.io.parse_example(batch, features)[LABEL_FEATURE].numpy()
        labels = labels[(labels >= 0) & (labels < len(class_names))]
        counts += np.bincount(labels, minlength=len(class_names))
    return {name: int(count) for name, count in zip(class_names, counts)}


def misclassified_images(example_files: List[str], model_dirs: Dict[str, str], class_names: List[str],
                         examined: int = EXAMINED_EXAMPLES, shown: int = SHOWN_PER_MODEL) -> Dict[str, Any]:
    """Each model's misclassified images among the first `examined` eval examples.

    Args:
      example_files: the eval split's gzip TFRecord files of tf.Examples (`image`, `label`, `path`).
      model_dirs: {model name: SavedModel folder with a `serving_default` signature taking serialized
        tf.Examples and returning `class_ids` (B,)}.
      class_names: the label mapping.
      examined: how many examples (the first ones) both models predict.
      shown: at most this many misclassified images per model are kept.

    Returns:
      {"examined": n, "models": {name: {"wrong": how many of the n it got wrong, "images": [{"id", "label",
      "predicted", "thumbnail" (base64 PNG, None when the image cannot be decoded)}]}}}.

    Raises:
      ValueError: a signature returns another number of predictions than it was given examples.
    """
    loaded = {name: tf.saved_model.load(folder) for name, folder in model_dirs.items()}  # keeps the signatures alive
    signatures = {name: model.signatures[SERVING_SIGNATURE] for name, model in loaded.items()}
    input_names = {}
    for name, signature in signatures.items():
        (input_names[name],) = signature.structured_input_signature[1]
    features = {IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string), LABEL_FEATURE: tf.io.FixedLenFeature([], tf.int64),
                PATH_FEATURE: tf.io.FixedLenFeature([], tf.string, default_value="")}
    results = {name: {"wrong": 0, "images": []} for name in signatures}
    count = 0
    records = tf.data.TFRecordDataset(example_files, compression_type="GZIP").take(examined).batch(_BATCH_SIZE)
    for batch in records:
        parsed = {key: value.numpy() for key, value in tf.io.parse_example(batch, features).items()}
        count += len(parsed[LABEL_FEATURE])
        for name, signature in signatures.items():
            class_ids = signature(**{input_names[name]: batch})[CLASS_IDS_OUTPUT].numpy().reshape(-1)
            if class_ids.size != parsed[LABEL_FEATURE].size:
                raise ValueError(f"model {name!r} returned {class_ids.size} class ids for "
                                 f"{parsed[LABEL_FEATURE].size} examples")
            for index in np.flatnonzero(class_ids != parsed[LABEL_FEATURE]):
                results[name]["wrong"] += 1
                if len(results[name]["images"]) < shown:
                    results[name]["images"].append({
                        "id": parsed[PATH_FEATURE][index].decode("utf-8", "replace"),
                        "label": _class_name(int(parsed[LABEL_FEATURE][index]), class_names),
                        "predicted": _class_name(int(class_ids[index]), class_names),
                        "thumbnail": thumbnail_png(parsed[IMAGE_FEATURE][index]),
                    })
    return {"examined": count, "models": results}


def _class_name(class_id: int, class_names: List[str]) -> str:
    return class_names[class_id] if 0 <= class_id < len(class_names) else f"class id {class_id}"


def thumbnail_png(encoded: bytes, pixels: int = THUMBNAIL_PIXELS) -> Optional[str]:
    """The image scaled so that its longer side is `pixels` (nearest neighbour when enlarging, so that
    small images stay sharp), as base64 PNG; None when it cannot be decoded. The first frame of a GIF."""
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            image.seek(0)
            rgb = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    scale = pixels / max(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    resized = rgb.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    resized.save(buffer, "PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
