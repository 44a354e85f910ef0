"""Fixes for two bugs of Keras 3 (TensorFlow backend) `fit` under a tf.distribute strategy.

Both are in private Keras functions, replaced here by `fix_keras_under_strategies()` (idempotent),
which `distribute.build_strategy` calls before it creates any strategy other than the default.
They were found with Keras 3.12 and TensorFlow 2.16; remove them once Keras fixes them.

1. Before training, Keras builds the model from the first batch, which it first averages over the
   replicas with `strategy.reduce`. That fails when the global batch does not split evenly over
   the replicas (MirroredStrategy: "Inputs to operation AddN ... must have the same size and
   shape") and, under MultiWorkerMirroredStrategy with several workers, for any batch of
   (images, labels). Only the shapes are needed: the fix builds from the first replica's batch.
2. Keras averages what a train or test step returns with `strategy.reduce("MEAN", value, axis=0)`
   under MultiWorkerMirroredStrategy with several workers, which fails on scalars ("Invalid
   reduction dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388); every metric
   result is a scalar. The fix averages scalars over the replicas only (axis=None).
"""

import tensorflow as tf
from keras.src.backend.tensorflow import trainer as keras_tensorflow_trainer


def fix_keras_under_strategies() -> None:
    """Replaces the two faulty Keras functions (see the module docstring); does nothing the second time."""
    trainer_class = keras_tensorflow_trainer.TensorFlowTrainer
    if trainer_class._maybe_symbolic_build is not _build_from_first_replica_batch:
        trainer_class._maybe_symbolic_build = _build_from_first_replica_batch
    if keras_tensorflow_trainer.reduce_per_replica is not _reduce_per_replica:
        _reduce_per_replica.keras_function = keras_tensorflow_trainer.reduce_per_replica
        keras_tensorflow_trainer.reduce_per_replica = _reduce_per_replica


def _first_replica_value(strategy: tf.distribute.Strategy, value):
    return value if value is None else strategy.experimental_local_results(value)[0]


def _build_from_first_replica_batch(self, iterator=None, data_batch=None):
    """`TensorFlowTrainer._maybe_symbolic_build`, building from the first replica's part of the first batch."""
    if self._distribute_strategy is None:
        # As Keras: without a strategy the model is built when the train function is traced.
        return
    if iterator is not None:
        for _, _, batches in iterator:
            data_batch = tf.nest.map_structure(
                lambda value: _first_replica_value(self.distribute_strategy, value), next(batches)
            )
            break
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _reduce_per_replica(values, strategy: tf.distribute.Strategy, reduction: str):
    """Keras' `reduce_per_replica`, averaging scalars without an axis under multi-worker training."""
    multi_worker = keras_tensorflow_trainer._collective_all_reduce_multi_worker(strategy)
    if reduction not in ("auto", "mean") or not multi_worker:
        return _reduce_per_replica.keras_function(values, strategy, reduction)

    def mean(value):
        is_scalar = _first_replica_value(strategy, value).shape.rank == 0
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None if is_scalar else 0)

    return tf.nest.map_structure(mean, values)
