"""Pooling of sequence features into one row per time window.

Pure TensorFlow; works in graph mode with unknown batch and sequence lengths.
"""

import tensorflow as tf


def flatten_sequence_features(features, pool_size):
    """Averages consecutive windows of `pool_size` steps and flattens windows into the batch.

    The last window averages only the steps that exist when the sequence length
    is not a multiple of `pool_size`. Rows are ordered by batch element first,
    then by window: row `b * num_windows + w` is window `w` of element `b`.

    Args:
        features: float tensor of shape (batch, steps, depth); batch and steps may be unknown.
        pool_size: Python int >= 1, the number of steps per window.

    Returns:
        A tensor of shape (batch * ceil(steps / pool_size), depth) with the dtype of `features`.

    Raises:
        ValueError: if `features` is not of rank 3 or `pool_size` is less than 1.
    """
    features = tf.convert_to_tensor(features)
    if features.shape.rank != 3:
        raise ValueError(f"features must have rank 3 (batch, steps, depth), got shape {features.shape}")
    if pool_size < 1:
        raise ValueError(f"pool_size must be at least 1, got {pool_size}")
    batch_size, num_steps = tf.unstack(tf.shape(features)[:2])
    depth = features.shape[-1] if features.shape[-1] is not None else tf.shape(features)[-1]
    num_windows = (num_steps + pool_size - 1) // pool_size

    padded = tf.pad(features, [[0, 0], [0, num_windows * pool_size - num_steps], [0, 0]])
    windows = tf.reshape(padded, [batch_size, num_windows, pool_size, depth])
    window_sums = tf.reduce_sum(windows, axis=2)
    return tf.reshape(window_sums / _window_lengths(num_steps, num_windows, pool_size, features.dtype), [-1, depth])


def _window_lengths(num_steps, num_windows, pool_size, dtype):
    """Number of real (unpadded) steps in each window, shaped (1, num_windows, 1) for broadcasting."""
    window_starts = tf.range(num_windows) * pool_size
    lengths = tf.minimum(pool_size, num_steps - window_starts)
    return tf.reshape(tf.cast(lengths, dtype), [1, -1, 1])
