"""Exports the classifier as a SavedModel with two signatures, decoding inside the model, plus a `.keras`
and a TFLite copy of it in the SavedModel's `assets.extra/`.

- `serving_default`: (B,) serialized tf.Examples with the encoded image under `training.image_feature`
  (`image` by default; what TFMA and TFX's evaluator feed).
- `serving_images`: (B,) raw encoded image bytes, JPEG/PNG/GIF/BMP (what a user sends).

Both return `probabilities` (B, C) float32, `class_ids` (B,) int64 and `classes` (B,) string.
An empty batch (B = 0) fails with InvalidArgumentError naming the signature: "serving_images: the
batch is empty; send at least one encoded image" (without the check the convolutions fail obscurely).

`assets.extra/` is the SavedModel folder for files that live beside the model and are not loaded with
it (TF Serving, TFMA and `tf.saved_model.load` ignore it), so it travels wherever the SavedModel is
copied, the Pusher's version folder included:

- `classifier.keras`: the Keras classifier (`keras.models.load_model`), images (B, S, S, 3) float32
  in [0, 1] -> probabilities (B, C), under the dtype policy it was trained with (so it computes what the
  SavedModel computes);
- `model.tflite`: the same classifier in float32 whatever `training.precision` was (TFLite has no
  bfloat16 kernels), signature `serving_default`: `images` (1, S, S, 3) float32 in [0, 1] ->
  `probabilities` (1, C) float32. It does not decode: the antialiased resize of the serving signatures
  (ScaleAndTranslate) is not a TFLite op, so it takes images already decoded and resized as
  `trainer.data.decode_image` does (3 channels, bilinear with antialiasing, no aspect ratio kept);
- `class_names.json`: the class names, class i at index i (what both copies' probabilities index).
"""

import json
import os
import tempfile
from typing import List

import keras
import tensorflow as tf

from trainer.contract import (
    CLASS_IDS_OUTPUT,
    CLASS_NAMES_FILE,
    CLASSES_OUTPUT,
    IMAGE_FEATURE,
    PROBABILITIES_OUTPUT,
    SERVING_IMAGES_SIGNATURE,
    SERVING_SIGNATURE,
)
from trainer.data import FeatureKeys, decode_image_batch, parse_examples

EXTRA_FILES_FOLDER = "assets.extra"
KERAS_FILE = "classifier.keras"
TFLITE_FILE = "model.tflite"
# The TFLite copy's signature and output have the SavedModel's names.
TFLITE_SIGNATURE, TFLITE_INPUT, TFLITE_OUTPUT = SERVING_SIGNATURE, "images", PROBABILITIES_OUTPUT


def export_classifier(classifier: keras.Model, class_names: List[str], image_size: int, export_dir: str,
                      image_feature: str = IMAGE_FEATURE) -> None:
    """Writes the SavedModel to `export_dir` (`serving_default` reads the image from the tf.Example feature
    `image_feature`) and the `.keras`, TFLite and class-name files to `export_dir/assets.extra`."""
    keys = FeatureKeys(image=image_feature)
    class_table = tf.constant(class_names)

    def predict(encoded_images: tf.Tensor, signature: str, what: str) -> dict:
        not_empty = tf.debugging.assert_greater(
            tf.size(encoded_images), 0, message=f"{signature}: the batch is empty; send at least one {what}")
        with tf.control_dependencies([not_empty]):
            encoded_images = tf.identity(encoded_images)
        probabilities = tf.cast(classifier(decode_image_batch(encoded_images, image_size), training=False), tf.float32)
        class_ids = tf.argmax(probabilities, axis=1)
        return {PROBABILITIES_OUTPUT: probabilities, CLASS_IDS_OUTPUT: class_ids,
                CLASSES_OUTPUT: tf.gather(class_table, class_ids)}

    archive = keras.export.ExportArchive()
    archive.track(classifier)
    archive.add_endpoint(
        name=SERVING_SIGNATURE,
        fn=lambda examples: predict(parse_examples(examples, keys)[IMAGE_FEATURE], SERVING_SIGNATURE,
                                    "serialized tf.Example"),
        input_signature=[tf.TensorSpec([None], tf.string, name="examples")],
    )
    archive.add_endpoint(
        name=SERVING_IMAGES_SIGNATURE,
        fn=lambda images: predict(images, SERVING_IMAGES_SIGNATURE, "encoded image"),
        input_signature=[tf.TensorSpec([None], tf.string, name="images")],
    )
    archive.write_out(export_dir, verbose=False)

    extra_dir = os.path.join(export_dir, EXTRA_FILES_FOLDER)
    tf.io.gfile.makedirs(extra_dir)
    classifier.save(os.path.join(extra_dir, KERAS_FILE))
    with tf.io.gfile.GFile(os.path.join(extra_dir, TFLITE_FILE), "wb") as handle:
        handle.write(tflite_classifier(classifier, image_size))
    with tf.io.gfile.GFile(os.path.join(extra_dir, CLASS_NAMES_FILE), "w") as handle:
        json.dump(class_names, handle)


def float32_copy(model: keras.Model) -> keras.Model:
    """The same architecture with every layer under the float32 policy, and the same weights.

    Variables are float32 under every policy, so the weights carry over as they are; only the computation
    changes (bfloat16/float16 -> float32).
    """
    def float32_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.Model):  # a nested model (the encoder, a keras.applications backbone)
            return float32_copy(layer)
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    # clone_model's own `recursive=True` reaches only the first level of nested models (Keras 3.12), so the
    # clone function recurses itself.
    copy = keras.models.clone_model(model, clone_function=float32_layer)
    copy.set_weights(model.get_weights())
    return copy


def tflite_classifier(classifier: keras.Model, image_size: int) -> bytes:
    """The classifier as a float32 TFLite flatbuffer: `images` (1, S, S, 3) float32 in [0, 1] ->
    `probabilities` (1, C) float32, signature `serving_default`.

    Converted from a temporary SavedModel of the float32 copy: `TFLiteConverter.from_concrete_functions`
    on the same function failed with TF 2.16 ("missing attribute 'value'" on the variables' reads).
    """
    model = float32_copy(classifier)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=TFLITE_SIGNATURE,
        fn=lambda images: {TFLITE_OUTPUT: model(images, training=False)},
        input_signature=[tf.TensorSpec([1, image_size, image_size, 3], tf.float32, name=TFLITE_INPUT)],
    )
    with tempfile.TemporaryDirectory(prefix="selfsup-tflite-") as folder:
        archive.write_out(folder, verbose=False)
        return tf.lite.TFLiteConverter.from_saved_model(folder).convert()
