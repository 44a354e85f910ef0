"""The pretrained encoder as an artifact of its own: written by the Pretrainer, read by every fine-tune.

A Pretrainer Model artifact folder holds:

    encoder.keras          the encoder (keras.models.load_model)
    encoder.json           its description: architecture, width, image size, method, data it saw
    history.json           the pretraining history (loss, kNN, online probe, collapse signal, timings)
    augmented_views.png    a few pretraining images, each row: as decoded, its first and its second
                           augmented view (only when the encoder was pretrained: pretrain_epochs > 0)
    Format-Serving/        a SavedModel with the `serving_embeddings` signature:
                           (B,) encoded image bytes -> `embeddings` (B, D) float32, L2-normalised

`training.init_encoder` and `selfsup embed --model` accept that folder, its Format-Serving folder, or
a copy of the folder anywhere (the files above are all that is read).
"""

import hashlib
import json
import os
from typing import Any, Dict, Optional

import keras
import tensorflow as tf

from trainer.contract import AUGMENTED_VIEWS_FILE, HISTORY_FILE
from trainer.data import decode_image_batch
from trainer.encoders import build_encoder
from trainer.hparams import ConfigError, TrainingConfig

ENCODER_FILE = "encoder.keras"
DESCRIPTION_FILE = "encoder.json"
EMBEDDINGS_SIGNATURE = "serving_embeddings"
EMBEDDINGS_OUTPUT = "embeddings"
# What must match between an encoder and the config that reuses it.
_ARCHITECTURE_KEYS = ("encoder", "encoder_width", "image_size")


def describe(config: TrainingConfig, examples_uri: str, images: int, pretrained_from: str = None) -> Dict[str, Any]:
    """The encoder's description (encoder.json)."""
    return {
        "encoder": config.encoder, "encoder_width": config.encoder_width, "image_size": config.image_size,
        "method": config.method, "pretrain_epochs": config.pretrain_epochs, "init_encoder": pretrained_from,
        "examples": examples_uri, "pretraining_images": images,
    }


def artifact_root(path: str) -> str:
    """The folder holding encoder.json: `path` itself or its parent (a Format-Serving folder).

    Raises:
      ValueError: neither holds an encoder.
    """
    for folder in (path.rstrip("/"), os.path.dirname(path.rstrip("/"))):
        if tf.io.gfile.exists(os.path.join(folder, DESCRIPTION_FILE)):
            return folder
    raise ValueError(f"{path} is not a selfsup encoder: no {DESCRIPTION_FILE} in it or its parent "
                     "(expected a Pretrainer Model artifact folder)")


def read_description(path: str) -> Dict[str, Any]:
    with tf.io.gfile.GFile(os.path.join(artifact_root(path), DESCRIPTION_FILE)) as handle:
        return json.load(handle)


def check_compatible(description: Dict[str, Any], config: TrainingConfig, source: str, key: str) -> None:
    """Raises ConfigError naming both settings when the encoder at `source` is not the configured one."""
    wanted = {name: getattr(config, name) for name in _ARCHITECTURE_KEYS}
    found = {name: description.get(name) for name in _ARCHITECTURE_KEYS}
    if wanted != found:
        differences = ", ".join(f"training.{name} {wanted[name]!r} vs {found[name]!r}"
                                for name in _ARCHITECTURE_KEYS if wanted[name] != found[name])
        raise ConfigError(f"config key '{key}': the encoder in {source} does not match the configuration "
                          f"(configured vs the encoder's: {differences})")


def load_encoder(path: str, config: TrainingConfig, key: str) -> keras.Model:
    """The encoder saved at `path`, checked against `config` (call inside the strategy's scope).

    The architecture is built anew under the current dtype policy and given the saved weights: a
    `.keras` file keeps the policy each layer was saved with (a float32 encoder would stay float32 in a
    mixed_bfloat16 fine-tuning, and the other way round).
    """
    root = artifact_root(path)
    check_compatible(read_description(root), config, root, key)
    saved = keras.models.load_model(os.path.join(root, ENCODER_FILE), compile=False)
    encoder = build_encoder(config.encoder, config.image_size, config.encoder_width)
    encoder.set_weights(saved.get_weights())
    return encoder


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of every weight's bytes, in order: the same weights give the same digest."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    return digest.hexdigest()


def save_encoder(encoder: keras.Model, description: Dict[str, Any], history: Dict[str, Any], artifact_dir: str,
                 serving_dir: str, is_sequence: bool, augmented_views: Optional[tf.Tensor] = None) -> None:
    """Writes encoder.keras, encoder.json and history.json to `artifact_dir` (and augmented_views.png from
    `augmented_views`, a (H, W, 3) uint8 grid, when given) and the embeddings SavedModel to `serving_dir`."""
    tf.io.gfile.makedirs(artifact_dir)
    encoder.save(os.path.join(artifact_dir, ENCODER_FILE))
    for name, content in ((DESCRIPTION_FILE, dict(description, weights_digest=weights_digest(encoder))),
                          (HISTORY_FILE, history)):
        with tf.io.gfile.GFile(os.path.join(artifact_dir, name), "w") as handle:
            json.dump(content, handle, indent=1)
    if augmented_views is not None:
        tf.io.write_file(os.path.join(artifact_dir, AUGMENTED_VIEWS_FILE), tf.io.encode_png(augmented_views))
    export_embeddings(encoder, description["image_size"], is_sequence, serving_dir)


def export_embeddings(encoder: keras.Model, image_size: int, is_sequence: bool, export_dir: str) -> None:
    """A SavedModel whose `serving_embeddings` maps (B,) encoded images to (B, D) L2-normalised features
    (a sequence encoder's (B, T, D) features are averaged over T first), decoded as in training."""

    def embed(encoded_images: tf.Tensor) -> Dict[str, tf.Tensor]:
        not_empty = tf.debugging.assert_greater(
            tf.size(encoded_images), 0,
            message=f"{EMBEDDINGS_SIGNATURE}: the batch is empty; send at least one encoded image")
        with tf.control_dependencies([not_empty]):
            encoded_images = tf.identity(encoded_images)
        features = tf.cast(encoder(decode_image_batch(encoded_images, image_size), training=False), tf.float32)
        if is_sequence:
            features = tf.reduce_mean(features, axis=1)
        return {EMBEDDINGS_OUTPUT: tf.math.l2_normalize(features, axis=-1)}

    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.add_endpoint(name=EMBEDDINGS_SIGNATURE, fn=embed,
                         input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    archive.write_out(export_dir, verbose=False)
