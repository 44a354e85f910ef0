"""Exports the classifier as a SavedModel with two signatures, decoding inside the model.

- `serving_default`: (B,) serialized tf.Examples with an `image` bytes feature (what TFMA and
  TFX's evaluator feed).
- `serving_images`: (B,) raw encoded image bytes, JPEG/PNG/GIF/BMP (what a user sends).

Both return `probabilities` (B, C) float32, `class_ids` (B,) int64 and `classes` (B,) string.
An empty batch (B = 0) fails with InvalidArgumentError naming the signature: "serving_images: the
batch is empty; send at least one encoded image" (without the check the convolutions fail obscurely).
"""

from typing import List

import keras
import tensorflow as tf

from trainer.data import IMAGE_FEATURE, decode_image_batch, parse_examples

SERVING_EXAMPLES_SIGNATURE = "serving_default"
SERVING_IMAGES_SIGNATURE = "serving_images"


def export_classifier(classifier: keras.Model, class_names: List[str], image_size: int, export_dir: str) -> None:
    """Writes the SavedModel to `export_dir`."""
    class_table = tf.constant(class_names)

    def predict(encoded_images: tf.Tensor, signature: str, what: str) -> dict:
        not_empty = tf.debugging.assert_greater(
            tf.size(encoded_images), 0, message=f"{signature}: the batch is empty; send at least one {what}")
        with tf.control_dependencies([not_empty]):
            encoded_images = tf.identity(encoded_images)
        probabilities = tf.cast(classifier(decode_image_batch(encoded_images, image_size), training=False), tf.float32)
        class_ids = tf.argmax(probabilities, axis=1)
        return {"probabilities": probabilities, "class_ids": class_ids, "classes": tf.gather(class_table, class_ids)}

    archive = keras.export.ExportArchive()
    archive.track(classifier)
    archive.add_endpoint(
        name=SERVING_EXAMPLES_SIGNATURE,
        fn=lambda examples: predict(parse_examples(examples)[IMAGE_FEATURE], SERVING_EXAMPLES_SIGNATURE,
                                    "serialized tf.Example"),
        input_signature=[tf.TensorSpec([None], tf.string, name="examples")],
    )
    archive.add_endpoint(
        name=SERVING_IMAGES_SIGNATURE,
        fn=lambda images: predict(images, SERVING_IMAGES_SIGNATURE, "encoded image"),
        input_signature=[tf.TensorSpec([None], tf.string, name="images")],
    )
    archive.write_out(export_dir, verbose=False)
