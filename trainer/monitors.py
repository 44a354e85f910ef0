"""Callbacks that watch pretraining: kNN accuracy, representation collapse, NaN loss.

They write their values into the epoch's `logs`, so Keras' History and TensorBoard record them
(put them before the TensorBoard callback in the list).
"""

import math
from typing import Callable

import keras
import numpy as np
import tensorflow as tf


class NanLossError(RuntimeError):
    """The training loss became NaN or infinite: nothing is exported."""


class RepresentationCollapseError(RuntimeError):
    """The SSL outputs collapsed to (nearly) a constant: nothing is exported."""


class FailOnNanLoss(keras.callbacks.Callback):
    """Raises NanLossError (Keras' TerminateOnNaN only stops, and the run would go on to export)."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NanLossError(f"training loss is {float(loss)} at batch {batch}: stopping, nothing is exported")


def embed(encode: Callable[[tf.Tensor], tf.Tensor], dataset: tf.data.Dataset):
    """L2-normalised embeddings (N, D) and labels (N,) of a labeled dataset."""
    embeddings, labels = [], []
    for images, batch_labels in dataset:
        embeddings.append(tf.math.l2_normalize(tf.cast(encode(images), tf.float32), axis=1).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(embeddings), np.concatenate(labels)


def weighted_knn_accuracy(train_embeddings, train_labels, eval_embeddings, eval_labels, k: int,
                          num_classes: int, temperature: float = 0.07) -> float:
    """Weighted kNN (cosine similarity, weights exp(sim / temperature), as in InstDisc/solo-learn).

    Args:
      train_embeddings: (N, D) L2-normalised; train_labels: (N,) ints.
      eval_embeddings: (M, D) L2-normalised; eval_labels: (M,) ints.

    Returns:
      Accuracy in [0, 1] of predicting each eval label from its k nearest train embeddings.
    """
    k = min(k, len(train_labels))
    similarities = eval_embeddings @ train_embeddings.T  # (M, N)
    neighbours = np.argpartition(-similarities, k - 1, axis=1)[:, :k]
    neighbour_similarities = np.take_along_axis(similarities, neighbours, axis=1)
    weights = np.exp(neighbour_similarities / temperature)
    votes = np.zeros((len(eval_labels), num_classes))
    np.add.at(votes, (np.arange(len(eval_labels))[:, None], train_labels[neighbours]), weights)
    return float(np.mean(votes.argmax(axis=1) == eval_labels))


class KnnMonitor(keras.callbacks.Callback):
    """Every `every` epochs: weighted kNN accuracy of eval embeddings against train embeddings."""

    def __init__(self, encode, train_dataset, eval_dataset, k: int, num_classes: int, every: int):
        super().__init__()
        self.encode = encode
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.k = k
        self.num_classes = num_classes
        self.every = every

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        train_embeddings, train_labels = embed(self.encode, self.train_dataset)
        eval_embeddings, eval_labels = embed(self.encode, self.eval_dataset)
        logs["knn_accuracy"] = weighted_knn_accuracy(
            train_embeddings, train_labels, eval_embeddings, eval_labels, self.k, self.num_classes
        )


class CollapseMonitor(keras.callbacks.Callback):
    """Fails when the epoch's `output_std` falls below `threshold` (SimSiam/BYOL collapse signal)."""

    def __init__(self, threshold: float, projection_dim: int):
        super().__init__()
        self.threshold = threshold
        self.healthy = 1.0 / math.sqrt(projection_dim)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("output_std")
        if value is None or self.threshold <= 0:
            return
        if float(value) < self.threshold:
            raise RepresentationCollapseError(
                f"representation collapsed at epoch {epoch + 1}: output_std={float(value):.5f} is below "
                f"training.collapse_std_threshold={self.threshold} (a healthy value is about {self.healthy:.3f}); "
                "nothing is exported. Try a lower learning rate, more weight decay or stronger augmentation."
            )
