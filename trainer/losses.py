"""Self-supervised losses: SimCLR NT-Xent, SimSiam and BYOL.

Pure TensorFlow (no Keras models, no TFX). Every loss is computed in float32,
whatever the dtype of its inputs (mixed-precision encoders give bfloat16 or
float16 projections).

NT-Xent follows google-research/simclr `tf2/objective.py`
(`add_contrastive_loss`): inside a `tf.distribute` replica context with more
than one replica, the negatives are gathered from all replicas with
`ReplicaContext.all_gather`, whose gradient is all-reduced back to the replica
that produced each projection.
"""

import math

import tensorflow as tf

# Subtracted from the logit of each anchor with itself so that softmax ignores it.
SELF_SIMILARITY_PENALTY = 1e9


def nt_xent_logits_and_labels(projections_1, projections_2, temperature):
    """Logits and positive indices of the NT-Xent (normalised temperature-scaled cross-entropy) loss.

    The anchors are this replica's projections of both views. The candidates
    are the projections of both views from all replicas: gathered with
    `tf.distribute.get_replica_context().all_gather` when called inside
    `strategy.run` with more than one replica in sync, otherwise only the local
    projections (no strategy, one replica, or a cross-replica context). Every
    replica must then hold the same local batch size (batch the dataset with
    `drop_remainder=True`).

    With `n` local and `N` global examples per view, the layout is:

    * rows (anchors): `[view 1 of local examples 0..n-1, view 2 of local examples 0..n-1]`
    * columns (candidates): `[view 1 of global examples 0..N-1, view 2 of global examples 0..N-1]`,
      where replica `r` holds global examples `r * n .. (r + 1) * n - 1`.

    The positive of an anchor is the other view of the same example; every other
    column except the anchor itself is a negative (2N - 2 of them). The anchor's
    own column has `SELF_SIMILARITY_PENALTY` subtracted from its logit.

    Args:
        projections_1: float tensor of shape (n, dim), projections of the first view.
        projections_2: float tensor of shape (n, dim), projections of the second view
            of the same examples, in the same order.
        temperature: positive scalar dividing the cosine similarities.

    Returns:
        A pair `(logits, labels)`: float32 logits of shape (2n, 2N) and int32
        labels of shape (2n,) holding the column index of each anchor's positive,
        suitable for `tf.nn.sparse_softmax_cross_entropy_with_logits`.

    Raises:
        ValueError: if the projections are not of rank 2, their static shapes
            differ, or `temperature` is a Python number that is not positive.
    """
    _check_same_shape(projections_1, projections_2, "projections_1", "projections_2", rank=2)
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ValueError(f"temperature must be greater than 0, got {temperature}")
    projections_1, projections_2 = tf.cast(projections_1, tf.float32), tf.cast(projections_2, tf.float32)
    local_1 = tf.math.l2_normalize(projections_1, axis=-1)
    local_2 = tf.math.l2_normalize(projections_2, axis=-1)
    global_1, global_2, replica_offset = _gather_from_all_replicas(local_1, local_2)

    local_batch_size = tf.shape(local_1)[0]
    global_batch_size = tf.shape(global_1)[0]
    anchors = tf.concat([local_1, local_2], axis=0)
    candidates = tf.concat([global_1, global_2], axis=0)
    logits = tf.matmul(anchors, candidates, transpose_b=True) / tf.cast(temperature, tf.float32)

    global_indices = replica_offset + tf.range(local_batch_size)
    self_columns = tf.concat([global_indices, global_indices + global_batch_size], axis=0)
    positive_columns = tf.concat([global_indices + global_batch_size, global_indices], axis=0)
    self_mask = tf.one_hot(self_columns, 2 * global_batch_size, dtype=tf.float32)
    return logits - SELF_SIMILARITY_PENALTY * self_mask, positive_columns


def nt_xent(projections_1, projections_2, temperature):
    """SimCLR's NT-Xent loss and contrastive accuracy, from one logits matrix (one all-gather per view).

    The loss is the mean softmax cross-entropy over this replica's 2n anchors; the accuracy is the
    fraction of them whose highest logit is their positive. Under a `tf.distribute` strategy the
    negatives come from all replicas (see `nt_xent_logits_and_labels`), but the mean is over THIS
    replica's anchors only. A caller whose gradients are summed across replicas (the default for
    `optimizer.apply_gradients` under a strategy) must therefore divide the loss by
    `strategy.num_replicas_in_sync` before taking gradients; the summed gradient then equals the
    gradient of the loss over the whole global batch.

    Args:
        projections_1: float tensor of shape (n, dim), projections of the first view.
        projections_2: float tensor of shape (n, dim), projections of the second view.
        temperature: positive scalar dividing the cosine similarities.

    Returns:
        (loss, accuracy): float32 scalars; the accuracy, in [0, 1], carries no gradient.

    Raises:
        ValueError: as `nt_xent_logits_and_labels`.
    """
    logits, labels = nt_xent_logits_and_labels(projections_1, projections_2, temperature)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    predicted = tf.argmax(tf.stop_gradient(logits), axis=-1, output_type=tf.int32)
    return loss, tf.reduce_mean(tf.cast(tf.equal(predicted, labels), tf.float32))


def simsiam_loss(predictions, projections):
    """SimSiam loss for one direction: negative mean cosine similarity.

    No gradient flows through `projections` (stop-gradient). The caller
    symmetrises: `0.5 * (simsiam_loss(p1, z2) + simsiam_loss(p2, z1))`.

    Args:
        predictions: float tensor of shape (batch, dim), predictor outputs of one view.
        projections: float tensor of shape (batch, dim), projector outputs of the other view.

    Returns:
        A float32 scalar in [-1, 1]; -1 when the inputs point the same way.

    Raises:
        ValueError: if the static shapes differ or are not of rank 2.
    """
    _check_same_shape(predictions, projections, "predictions", "projections", rank=2)
    predictions, projections = tf.cast(predictions, tf.float32), tf.cast(projections, tf.float32)
    return -tf.reduce_mean(_cosine_similarity(predictions, tf.stop_gradient(projections)))


def byol_loss(predictions, targets):
    """BYOL loss for one direction: mean of `2 - 2 * cos(prediction, target)`.

    This is the mean squared error between the L2-normalised vectors. No
    gradient flows through `targets` (stop-gradient). The caller symmetrises
    over the two views.

    Args:
        predictions: float tensor of shape (batch, dim), online predictor outputs of one view.
        targets: float tensor of shape (batch, dim), target projector outputs of the other view.

    Returns:
        A float32 scalar in [0, 4]; 0 when the inputs point the same way.

    Raises:
        ValueError: if the static shapes differ or are not of rank 2.
    """
    _check_same_shape(predictions, targets, "predictions", "targets", rank=2)
    predictions, targets = tf.cast(predictions, tf.float32), tf.cast(targets, tf.float32)
    return tf.reduce_mean(2.0 - 2.0 * _cosine_similarity(predictions, tf.stop_gradient(targets)))


def byol_target_decay(step, total_steps, base_decay):
    """BYOL target-network EMA decay on a cosine schedule from `base_decay` to 1.

    `tau = 1 - (1 - base_decay) * (cos(pi * step / total_steps) + 1) / 2`, with
    `step / total_steps` clipped to [0, 1] so that steps past the end give 1.0.

    Args:
        step: scalar, the current training step (0 at the start).
        total_steps: scalar, the number of training steps.
        base_decay: scalar in [0, 1), the decay at step 0.

    Returns:
        A float32 scalar tensor.

    Raises:
        ValueError: if `total_steps` is a Python number less than 1.
    """
    if isinstance(total_steps, (int, float)) and total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    progress = tf.clip_by_value(tf.cast(step, tf.float32) / tf.cast(total_steps, tf.float32), 0.0, 1.0)
    cosine_weight = (tf.cos(math.pi * progress) + 1.0) / 2.0
    return 1.0 - (1.0 - tf.cast(base_decay, tf.float32)) * cosine_weight


def _gather_from_all_replicas(local_1, local_2):
    """Both views gathered along the batch axis from all replicas, and this replica's batch offset.

    Returns the inputs and offset 0 outside a multi-replica replica context.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return local_1, local_2, 0
    replica_id = tf.cast(context.replica_id_in_sync_group, tf.int32)
    offset = replica_id * tf.shape(local_1)[0]
    return context.all_gather(local_1, axis=0), context.all_gather(local_2, axis=0), offset


def _cosine_similarity(vectors_1, vectors_2):
    """Row-wise cosine similarity in float32: shape (batch,)."""
    normalised_1 = tf.math.l2_normalize(tf.cast(vectors_1, tf.float32), axis=-1)
    normalised_2 = tf.math.l2_normalize(tf.cast(vectors_2, tf.float32), axis=-1)
    return tf.reduce_sum(normalised_1 * normalised_2, axis=-1)


def _check_same_shape(tensor_1, tensor_2, name_1, name_2, rank):
    """Raises ValueError if the static shapes are incompatible or not of the given rank."""
    shape_1 = tf.TensorShape(tensor_1.shape)
    shape_2 = tf.TensorShape(tensor_2.shape)
    for name, shape in ((name_1, shape_1), (name_2, shape_2)):
        if shape.rank is not None and shape.rank != rank:
            raise ValueError(f"{name} must have rank {rank}, got shape {shape}")
    if not shape_1.is_compatible_with(shape_2):
        raise ValueError(f"{name_1} and {name_2} must have the same shape, got {shape_1} and {shape_2}")
