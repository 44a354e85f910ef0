"""Tests of trainer/losses.py against slow NumPy references and under MirroredStrategy."""

import math

import numpy as np
import pytest
import tensorflow as tf

from trainer import losses

NUM_REPLICAS = 2


def reference_nt_xent_loss(projections_1, projections_2, temperature):
    """NT-Xent with plain Python loops over the 2N anchors, in float64."""
    vectors = [row / np.linalg.norm(row) for row in np.concatenate([projections_1, projections_2]).astype(np.float64)]
    batch_size = len(projections_1)
    total = 0.0
    for anchor in range(2 * batch_size):
        positive = (anchor + batch_size) % (2 * batch_size)
        denominator = 0.0
        for candidate in range(2 * batch_size):
            if candidate != anchor:
                denominator += math.exp(float(np.dot(vectors[anchor], vectors[candidate])) / temperature)
        numerator = math.exp(float(np.dot(vectors[anchor], vectors[positive])) / temperature)
        total += -math.log(numerator / denominator)
    return total / (2 * batch_size)


def random_views(batch_size, dim, seed, noise=1.0):
    """Two views: a shared random signal plus independent noise of the given scale."""
    generator = np.random.default_rng(seed)
    signal = generator.normal(size=(batch_size, dim))
    view_1 = signal + noise * generator.normal(size=(batch_size, dim))
    view_2 = signal + noise * generator.normal(size=(batch_size, dim))
    return view_1.astype(np.float32), view_2.astype(np.float32)


@pytest.mark.parametrize("batch_size", [1, 2, 5, 16])
@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_matches_reference(batch_size, temperature):
    projections_1, projections_2 = random_views(batch_size, dim=8, seed=batch_size)
    loss = losses.nt_xent(projections_1, projections_2, temperature)[0]
    expected = reference_nt_xent_loss(projections_1, projections_2, temperature)
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_nt_xent_logits_and_labels_shapes():
    projections_1, projections_2 = random_views(batch_size=6, dim=4, seed=0)
    logits, labels = losses.nt_xent_logits_and_labels(projections_1, projections_2, 0.1)
    assert logits.shape == (12, 12)
    np.testing.assert_array_equal(labels.numpy(), np.concatenate([np.arange(6, 12), np.arange(6)]))


def test_nt_xent_falls_when_positives_are_more_similar():
    noisy = losses.nt_xent(*random_views(32, dim=16, seed=1, noise=1.0), temperature=0.2)[0]
    cleaner = losses.nt_xent(*random_views(32, dim=16, seed=1, noise=0.3), temperature=0.2)[0]
    clean = losses.nt_xent(*random_views(32, dim=16, seed=1, noise=0.0), temperature=0.2)[0]
    assert noisy > cleaner > clean


def test_nt_xent_computes_in_float32_for_low_precision_inputs():
    projections_1, projections_2 = random_views(batch_size=4, dim=8, seed=2)
    loss = losses.nt_xent(tf.cast(projections_1, tf.bfloat16), tf.cast(projections_2, tf.bfloat16), 0.5)[0]
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(loss.numpy(), reference_nt_xent_loss(projections_1, projections_2, 0.5), atol=0.05)


def test_nt_xent_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        losses.nt_xent(tf.zeros([4, 8]), tf.zeros([4, 6]), 0.1)[0]
    with pytest.raises(ValueError, match="rank 2"):
        losses.nt_xent(tf.zeros([4, 8, 1]), tf.zeros([4, 8, 1]), 0.1)[0]
    with pytest.raises(ValueError, match="temperature"):
        losses.nt_xent(tf.zeros([4, 8]), tf.zeros([4, 8]), 0.0)[0]


def test_contrastive_accuracy_is_one_for_identical_well_separated_views():
    projections = tf.eye(8, 16) * 3.0
    assert losses.nt_xent(projections, projections, 0.1)[1].numpy() == 1.0


def test_contrastive_accuracy_is_low_for_unrelated_views():
    generator = np.random.default_rng(3)
    projections_1 = generator.normal(size=(64, 32)).astype(np.float32)
    projections_2 = generator.normal(size=(64, 32)).astype(np.float32)
    assert losses.nt_xent(projections_1, projections_2, 0.1)[1].numpy() < 0.2


def two_cpu_strategy():
    """MirroredStrategy over the two logical CPUs configured in conftest.py, or skip."""
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < NUM_REPLICAS:
        pytest.skip("needs two logical CPU devices; TensorFlow was initialised before conftest.py ran")
    return tf.distribute.MirroredStrategy([device.name for device in devices[:NUM_REPLICAS]])


def single_device_loss_and_gradients(inputs_1, inputs_2, kernel_value, temperature):
    """Loss on the whole batch, its gradient w.r.t. the kernel and w.r.t. the projections."""
    kernel = tf.Variable(kernel_value)
    with tf.GradientTape() as tape:
        projections_1 = tf.matmul(inputs_1, kernel)
        projections_2 = tf.matmul(inputs_2, kernel)
        tape.watch([projections_1, projections_2])
        loss = losses.nt_xent(projections_1, projections_2, temperature)[0]
    kernel_gradient, projection_gradient_1, projection_gradient_2 = tape.gradient(
        loss, [kernel, projections_1, projections_2]
    )
    return loss, kernel_gradient, projection_gradient_1, projection_gradient_2


def distributed_loss_and_gradients(strategy, inputs_1, inputs_2, kernel_value, temperature):
    """Per-replica loss (MEAN-reduced), summed kernel gradient and concatenated projection gradients.

    Each replica scales its loss by 1 / num_replicas_in_sync before taking gradients.
    """
    local_batch_size = len(inputs_1) // strategy.num_replicas_in_sync
    with strategy.scope():
        kernel = tf.Variable(kernel_value)

    def local_slice(array):
        return strategy.experimental_distribute_values_from_function(
            lambda context: array[
                context.replica_id_in_sync_group * local_batch_size : (context.replica_id_in_sync_group + 1)
                * local_batch_size
            ]
        )

    def replica_step(local_inputs_1, local_inputs_2):
        with tf.GradientTape() as tape:
            projections_1 = tf.matmul(local_inputs_1, kernel)
            projections_2 = tf.matmul(local_inputs_2, kernel)
            tape.watch([projections_1, projections_2])
            loss = losses.nt_xent(projections_1, projections_2, temperature)[0]
            scaled_loss = loss / tf.distribute.get_replica_context().num_replicas_in_sync
        gradients = tape.gradient(scaled_loss, [kernel, projections_1, projections_2])
        return loss, *gradients

    @tf.function
    def step(distributed_inputs_1, distributed_inputs_2):
        loss, kernel_gradient, projection_gradient_1, projection_gradient_2 = strategy.run(
            replica_step, args=(distributed_inputs_1, distributed_inputs_2)
        )
        return (
            strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.SUM, kernel_gradient, axis=None),
            strategy.gather(projection_gradient_1, axis=0),
            strategy.gather(projection_gradient_2, axis=0),
        )

    return step(local_slice(inputs_1), local_slice(inputs_2))


def test_nt_xent_under_mirrored_strategy_matches_single_device():
    strategy = two_cpu_strategy()
    generator = np.random.default_rng(4)
    inputs_1 = generator.normal(size=(8, 6)).astype(np.float32)
    inputs_2 = (inputs_1 + 0.5 * generator.normal(size=(8, 6))).astype(np.float32)
    kernel_value = generator.normal(size=(6, 5)).astype(np.float32)
    temperature = 0.5

    expected = single_device_loss_and_gradients(inputs_1, inputs_2, kernel_value, temperature)
    actual = distributed_loss_and_gradients(strategy, inputs_1, inputs_2, kernel_value, temperature)

    # The gathered negatives make the replica losses differ from per-half losses.
    half_batch_loss = losses.nt_xent(inputs_1[:4] @ kernel_value, inputs_2[:4] @ kernel_value, temperature)[0]
    assert abs(float(half_batch_loss) - float(expected[0])) > 1e-3
    for name, actual_value, expected_value in zip(
        ["loss", "kernel gradient", "projection gradient 1", "projection gradient 2"], actual, expected
    ):
        np.testing.assert_allclose(actual_value.numpy(), expected_value.numpy(), atol=1e-5, err_msg=name)


def test_nt_xent_gathers_the_views_once_for_the_loss_and_the_accuracy():
    """One logits matrix serves the loss and the accuracy: as many all-gathers as building the logits once."""
    strategy = two_cpu_strategy()
    projections = [tf.constant(view) for view in random_views(batch_size=8, dim=8, seed=5)]

    def collective_gathers(replica_fn):
        graph = tf.function(lambda one, two: strategy.run(replica_fn, args=(one, two))).get_concrete_function(
            *projections).graph
        return sum(op.type.startswith("CollectiveGather") for op in graph.get_operations())

    once = collective_gathers(lambda one, two: losses.nt_xent_logits_and_labels(one, two, 0.1))
    assert once > 0
    assert collective_gathers(lambda one, two: losses.nt_xent(one, two, 0.1)) == once


def test_nt_xent_in_cross_replica_context_does_not_gather():
    strategy = two_cpu_strategy()
    projections_1, projections_2 = random_views(batch_size=4, dim=8, seed=5)
    with strategy.scope():
        logits, _ = losses.nt_xent_logits_and_labels(projections_1, projections_2, 0.1)
    assert logits.shape == (8, 8)


def test_simsiam_loss_is_minus_one_for_identical_inputs():
    projections_1, _ = random_views(batch_size=6, dim=8, seed=6)
    np.testing.assert_allclose(losses.simsiam_loss(projections_1, projections_1).numpy(), -1.0, atol=1e-6)


def test_simsiam_loss_has_no_gradient_through_projections():
    predictions, projections = (tf.constant(view) for view in random_views(batch_size=6, dim=8, seed=7))
    with tf.GradientTape() as tape:
        tape.watch([predictions, projections])
        loss = losses.simsiam_loss(predictions, projections)
    prediction_gradient, projection_gradient = tape.gradient(loss, [predictions, projections])
    assert projection_gradient is None or not np.any(projection_gradient.numpy())
    assert np.any(prediction_gradient.numpy())


def test_simsiam_loss_matches_negative_cosine():
    predictions, projections = random_views(batch_size=5, dim=3, seed=8)
    cosines = [
        np.dot(prediction, projection) / (np.linalg.norm(prediction) * np.linalg.norm(projection))
        for prediction, projection in zip(predictions, projections)
    ]
    np.testing.assert_allclose(losses.simsiam_loss(predictions, projections).numpy(), -np.mean(cosines), atol=1e-6)


def test_byol_loss_is_zero_for_identical_inputs():
    predictions, _ = random_views(batch_size=6, dim=8, seed=9)
    np.testing.assert_allclose(losses.byol_loss(predictions, 2.0 * predictions).numpy(), 0.0, atol=1e-6)


def test_byol_loss_is_normalised_mean_squared_error_without_target_gradient():
    predictions, targets = (tf.constant(view) for view in random_views(batch_size=5, dim=4, seed=10))
    with tf.GradientTape() as tape:
        tape.watch(targets)
        loss = losses.byol_loss(predictions, targets)
    expected = np.mean(
        np.sum((tf.math.l2_normalize(predictions, -1) - tf.math.l2_normalize(targets, -1)).numpy() ** 2, axis=-1)
    )
    np.testing.assert_allclose(loss.numpy(), expected, atol=1e-5)
    target_gradient = tape.gradient(loss, targets)
    assert target_gradient is None or not np.any(target_gradient.numpy())


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError):
        losses.simsiam_loss(tf.zeros([4, 8]), tf.zeros([3, 8]))
    with pytest.raises(ValueError):
        losses.byol_loss(tf.zeros([4, 8]), tf.zeros([4]))


def test_byol_target_decay_schedule():
    assert losses.byol_target_decay(0, 100, 0.99).dtype == tf.float32
    np.testing.assert_allclose(losses.byol_target_decay(0, 100, 0.99).numpy(), 0.99, atol=1e-7)
    np.testing.assert_allclose(losses.byol_target_decay(50, 100, 0.99).numpy(), 0.995, atol=1e-7)
    np.testing.assert_allclose(losses.byol_target_decay(100, 100, 0.99).numpy(), 1.0, atol=1e-7)
    np.testing.assert_allclose(losses.byol_target_decay(150, 100, 0.99).numpy(), 1.0, atol=1e-7)
    with pytest.raises(ValueError):
        losses.byol_target_decay(0, 0, 0.99)
