"""Tests of trainer/flatten.py against a NumPy computation."""

import numpy as np
import pytest
import tensorflow as tf

from trainer.flatten import flatten_sequence_features


def reference_flatten(features, pool_size):
    """Window means with plain loops: rows ordered batch first, then window."""
    rows = []
    for sequence in features:
        for start in range(0, sequence.shape[0], pool_size):
            rows.append(sequence[start : start + pool_size].mean(axis=0))
    return np.stack(rows)


def random_features(batch_size, num_steps, depth, seed=0):
    return np.random.default_rng(seed).normal(size=(batch_size, num_steps, depth)).astype(np.float32)


@pytest.mark.parametrize(
    "num_steps, pool_size",
    [(8, 2), (8, 4), (7, 3), (10, 4), (5, 1), (5, 5), (5, 7), (1, 3)],
)
def test_flatten_matches_numpy(num_steps, pool_size):
    features = random_features(batch_size=3, num_steps=num_steps, depth=4)
    flattened = flatten_sequence_features(tf.constant(features), pool_size)
    expected = reference_flatten(features, pool_size)
    assert flattened.shape == (3 * -(-num_steps // pool_size), 4)
    np.testing.assert_allclose(flattened.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_pool_size_one_is_a_reshape():
    features = random_features(batch_size=2, num_steps=5, depth=3)
    np.testing.assert_array_equal(flatten_sequence_features(features, 1).numpy(), features.reshape(10, 3))


def test_pool_size_at_least_steps_averages_whole_sequence():
    features = random_features(batch_size=4, num_steps=6, depth=2)
    for pool_size in (6, 9):
        np.testing.assert_allclose(
            flatten_sequence_features(features, pool_size).numpy(), features.mean(axis=1), atol=1e-6
        )


def test_partial_last_window_averages_only_existing_steps():
    features = np.arange(5, dtype=np.float32).reshape(1, 5, 1)
    np.testing.assert_allclose(flatten_sequence_features(features, 2).numpy(), [[0.5], [2.5], [4.0]])


def test_works_in_graph_mode_with_unknown_batch_and_steps():
    pool_size = 3

    @tf.function(input_signature=[tf.TensorSpec([None, None, 4], tf.float32)])
    def flatten(features):
        flattened = flatten_sequence_features(features, pool_size)
        assert flattened.shape.as_list() == [None, 4]
        return flattened

    for batch_size, num_steps in ((2, 7), (5, 9), (1, 2)):
        features = random_features(batch_size, num_steps, depth=4, seed=batch_size)
        np.testing.assert_allclose(
            flatten(features).numpy(), reference_flatten(features, pool_size), rtol=1e-6, atol=1e-6
        )


def test_works_in_graph_mode_with_unknown_batch_only():
    @tf.function(input_signature=[tf.TensorSpec([None, 10, 3], tf.float32)])
    def flatten(features):
        return flatten_sequence_features(features, 4)

    features = random_features(batch_size=6, num_steps=10, depth=3)
    np.testing.assert_allclose(flatten(features).numpy(), reference_flatten(features, 4), rtol=1e-6, atol=1e-6)


def test_rejects_wrong_rank_and_pool_size():
    with pytest.raises(ValueError, match="rank 3"):
        flatten_sequence_features(tf.zeros([2, 3]), 1)
    with pytest.raises(ValueError, match="pool_size"):
        flatten_sequence_features(tf.zeros([2, 3, 4]), 0)
