"""Fixes for two bugs of Keras 3 (TensorFlow backend) `fit` under a tf.distribute strategy, fenced.

Both bugs are in private Keras functions, which `strategy_fixes(strategy)` replaces for the duration of a
`with` block and puts back on exit: the Trainers' `fit` calls (trainer/pretrain.py, finetune.py, fixmatch.py,
distill.py) run inside it. Nothing is replaced under a single-replica strategy (the default strategy, one
device), where neither bug arises, and nothing outside the block sees the replacements. They were written
for Keras 3.12 (KERAS_VERSIONS) and TensorFlow 2.16; under a strategy of several replicas with another Keras
the block raises KerasVersionError instead of patching functions it does not know. tests/test_keras_fixes.py
reproduces each bug without its fix: the day one of those tests fails, Keras has fixed that bug and the fix
below should go.

1. Before training, Keras builds the model from the first batch, which it first averages over the
   replicas with `strategy.reduce` (`TensorFlowTrainer._maybe_symbolic_build`). That fails when the global
   batch does not split evenly over the replicas (MirroredStrategy: "Inputs to operation AddN ... must have
   the same size and shape") and, under MultiWorkerMirroredStrategy with several workers, for any batch of
   (images, labels). Only the shapes are needed: the fix builds from the first replica's batch.
   Building the model, its optimizer and its metrics before `fit` does not avoid it: Keras averages the
   first batch before it looks at what is built (tested in tests/test_keras_fixes.py).
2. Keras averages what a train or test step returns with `strategy.reduce("MEAN", value, axis=0)`
   under MultiWorkerMirroredStrategy with several workers (`reduce_per_replica`), which fails on scalars
   ("Invalid reduction dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388); every metric
   result is a scalar. The fix averages scalars over the replicas only (axis=None).
"""

import contextlib
import threading
from typing import Iterator, Optional, Sequence, Tuple

import keras
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as keras_tensorflow_trainer

# The Keras versions the fixes were written for: from the first (included) to the second (excluded).
KERAS_VERSIONS: Tuple[Tuple[int, int], Tuple[int, int]] = ((3, 12), (3, 13))

# The two fixes, by name (see the module docstring).
BUILD_FIX = "build from the first replica's batch"  # bug 1: TensorFlowTrainer._maybe_symbolic_build
REDUCE_FIX = "average scalars without an axis"  # bug 2: reduce_per_replica
FIXES = (BUILD_FIX, REDUCE_FIX)

_lock = threading.Lock()
_depth = {name: 0 for name in FIXES}  # how many open `strategy_fixes` blocks apply each fix (they nest)
_originals = {}
# What the fix of bug 2 defers to for everything but multi-worker means.
_keras_reduce_per_replica = keras_tensorflow_trainer.reduce_per_replica


class KerasVersionError(RuntimeError):
    """The installed Keras is not one the fixes were written for."""


def _version(text: str) -> Tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int("".join(character for character in minor if character.isdigit()) or 0)


def check_keras_version(version: Optional[str] = None) -> None:
    """Raises KerasVersionError unless `version` (default: the installed Keras') is in KERAS_VERSIONS."""
    version = keras.__version__ if version is None else version
    (low, high), found = KERAS_VERSIONS, _version(version)
    if not low <= found < high:
        raise KerasVersionError(
            f"trainer/keras_fixes.py replaces two private functions of Keras {low[0]}.{low[1]} for training under "
            f"a tf.distribute strategy of several replicas, but Keras {version} is installed. Install "
            f"keras>={low[0]}.{low[1]},<{high[0]}.{high[1]}, or run tests/test_keras_fixes.py with Keras {version}: "
            "for each bug it still reproduces, check that the fix matches that version's code and widen "
            "KERAS_VERSIONS; drop the fixes of the bugs it no longer reproduces"
        )


def needs_fixes(strategy: tf.distribute.Strategy) -> bool:
    """True when `fit` under `strategy` can meet the bugs: the strategy has several replicas."""
    return strategy is not None and strategy.num_replicas_in_sync > 1


@contextlib.contextmanager
def strategy_fixes(strategy: tf.distribute.Strategy, fixes: Sequence[str] = FIXES) -> Iterator[None]:
    """Within the block, Keras' `fit` under `strategy` runs with `fixes` (default: both; see the module docstring).

    Under a strategy of one replica it changes nothing. Blocks nest; the original Keras functions are back
    when the outermost block exits, however it exits.

    Raises:
      KerasVersionError: `strategy` has several replicas and Keras is not in KERAS_VERSIONS.
      ValueError: an unknown fix.
    """
    unknown = [name for name in fixes if name not in FIXES]
    if unknown:
        raise ValueError(f"unknown Keras fix {unknown}; the fixes are {list(FIXES)}")
    if not needs_fixes(strategy):
        yield
        return
    check_keras_version()
    _apply(fixes)
    try:
        yield
    finally:
        _restore(fixes)


def _replace(name: str, value) -> None:
    if name == BUILD_FIX:
        keras_tensorflow_trainer.TensorFlowTrainer._maybe_symbolic_build = value
    else:
        keras_tensorflow_trainer.reduce_per_replica = value


def _apply(fixes: Sequence[str]) -> None:
    with _lock:
        for name in fixes:
            _depth[name] += 1
            if _depth[name] > 1:
                continue
            if name == BUILD_FIX:
                _originals[name] = keras_tensorflow_trainer.TensorFlowTrainer.__dict__["_maybe_symbolic_build"]
                _replace(name, _build_from_first_replica_batch)
            else:
                _originals[name] = keras_tensorflow_trainer.reduce_per_replica
                _replace(name, _reduce_per_replica)


def _restore(fixes: Sequence[str]) -> None:
    with _lock:
        for name in fixes:
            _depth[name] -= 1
            if _depth[name] == 0:
                _replace(name, _originals.pop(name))


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
        return _keras_reduce_per_replica(values, strategy, reduction)

    def mean(value):
        is_scalar = _first_replica_value(strategy, value).shape.rank == 0
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None if is_scalar else 0)

    return tf.nest.map_structure(mean, values)
