"""The fenced Keras fixes (trainer/keras_fixes.py) and the canaries that show each bug is still there.

- the fixes are in place only inside `strategy_fixes`, only under a strategy of several replicas, and only
  for the Keras versions they were written for (a clear error otherwise);
- canaries: each bug reproduced without its fix, and gone with it. When a canary fails because Keras no
  longer has the bug, drop that fix from trainer/keras_fixes.py (and the canary);
- the private attribute checkpoints.EpochBackup sets to resume (`model._initial_epoch`) is still the one
  Keras' fit reads.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import portpicker
import pytest
import tensorflow as tf
from conftest import two_cpu_mirrored_strategy
from keras.src.backend.tensorflow import trainer as keras_tensorflow_trainer

from trainer import keras_fixes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def mirrored():
    return two_cpu_mirrored_strategy(collective_key_base=4_000_000)


def keras_functions():
    return (keras_tensorflow_trainer.TensorFlowTrainer.__dict__["_maybe_symbolic_build"],
            keras_tensorflow_trainer.reduce_per_replica)


# --- The fence ---------------------------------------------------------------------------------------

def test_the_installed_keras_is_one_the_fixes_were_written_for():
    keras_fixes.check_keras_version()
    keras_fixes.check_keras_version("3.12.0")


@pytest.mark.parametrize("version", ["3.11.3", "3.13.0", "4.0.0"])
def test_another_keras_is_a_clear_error_naming_the_version_and_what_to_do(version):
    with pytest.raises(keras_fixes.KerasVersionError, match=f"Keras {version} is installed") as raised:
        keras_fixes.check_keras_version(version)
    assert "keras>=3.12,<3.13" in str(raised.value) and "tests/test_keras_fixes.py" in str(raised.value)


def test_the_fixes_are_in_place_only_inside_the_block_under_several_replicas(mirrored):
    originals = keras_functions()
    with keras_fixes.strategy_fixes(tf.distribute.get_strategy()):
        assert keras_functions() == originals  # one replica: nothing to fix
    with keras_fixes.strategy_fixes(mirrored):
        fixed = keras_functions()
        assert fixed[0] is not originals[0] and fixed[1] is not originals[1]
        with keras_fixes.strategy_fixes(mirrored):  # blocks nest
            assert keras_functions() == fixed
        assert keras_functions() == fixed
    assert keras_functions() == originals
    with pytest.raises(KeyError):
        with keras_fixes.strategy_fixes(mirrored, fixes=[keras_fixes.BUILD_FIX]):
            assert keras_functions()[0] is not originals[0] and keras_functions()[1] is originals[1]
            raise KeyError("a failing fit")
    assert keras_functions() == originals  # put back however the block ends


def test_another_keras_under_several_replicas_is_refused_before_anything_is_patched(mirrored, monkeypatch):
    monkeypatch.setattr(keras, "__version__", "3.14.1")
    originals = keras_functions()
    with pytest.raises(keras_fixes.KerasVersionError, match="Keras 3.14.1 is installed"):
        with keras_fixes.strategy_fixes(mirrored):
            pass
    assert keras_functions() == originals
    with keras_fixes.strategy_fixes(tf.distribute.get_strategy()):  # no fix needed: no check either
        pass


def test_an_unknown_fix_is_an_error(mirrored):
    with pytest.raises(ValueError, match="unknown Keras fix"):
        with keras_fixes.strategy_fixes(mirrored, fixes=["no such fix"]):
            pass


# --- Canary of bug 1: building from a batch that does not split evenly over the replicas -----------------

def uneven_fit(strategy, fixes):
    """fit() under `strategy` on global batches of 7 (4 + 3 per replica), the model, its optimizer and its
    metrics built before fit."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        model.optimizer.build(model.trainable_variables)
        model._symbolic_build(data_batch=(np.zeros((2, 3), "float32"), np.zeros((2,), "int64")))
    assert model.built and model.optimizer.built and model._compile_metrics.built
    generator = np.random.default_rng(0)
    dataset = tf.data.Dataset.from_tensor_slices(
        (generator.normal(size=(19, 3)).astype("float32"), generator.integers(0, 2, size=19))).batch(7)
    with keras_fixes.strategy_fixes(strategy, fixes=fixes):
        return model.fit(dataset, epochs=1, verbose=0).history


def test_canary_keras_still_averages_the_first_batch_over_the_replicas_to_build(mirrored):
    """Building the model, optimizer and metrics before fit does not avoid the bug (so the fix stays)."""
    try:
        uneven_fit(mirrored, fixes=[])
    except tf.errors.InvalidArgumentError as error:
        assert "must have the same size and shape" in str(error)
    else:
        pytest.fail(f"Keras {keras.__version__} no longer fails on uneven batches under MirroredStrategy: drop "
                    "BUILD_FIX (_build_from_first_replica_batch) from trainer/keras_fixes.py and this canary")
    history = uneven_fit(mirrored, fixes=[keras_fixes.BUILD_FIX])
    assert np.isfinite(history["loss"][0])


# --- Canary of bug 2: averaging scalar metrics over several workers ----------------------------------------

WORKER = """
import json, sys
import numpy as np
import tensorflow as tf
import keras
from trainer import keras_fixes

strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
generator = np.random.default_rng(0)
dataset = tf.data.Dataset.from_tensor_slices(
    (generator.normal(size=(16, 3)).astype("float32"), generator.integers(0, 2, size=16))).batch(8)
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
try:
    with keras_fixes.strategy_fixes(strategy, fixes=json.loads(sys.argv[1])):
        history = model.fit(dataset.with_options(options), epochs=1, verbose=0).history
    print("RESULT", json.dumps({"loss": history["loss"][0]}))
except Exception as error:
    print("RESULT", json.dumps({"error": f"{type(error).__name__}: {error}"}))
"""


def fit_on_two_workers(fixes, tmp_path, name):
    """The WORKER script on a two-worker MultiWorkerMirroredStrategy cluster; returns each worker's result."""
    workers = [f"127.0.0.1:{portpicker.pick_unused_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        log = open(tmp_path / f"{name}-{index}.log", "w")
        processes.append((subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(fixes)], cwd=ROOT, stdout=log,
                                           stderr=subprocess.STDOUT,
                                           env=dict(os.environ, TF_CONFIG=tf_config, TF_CPP_MIN_LOG_LEVEL="2")),
                          log))
    results = []
    for index, (process, log) in enumerate(processes):
        try:
            process.wait(timeout=WORKER_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        output = (tmp_path / f"{name}-{index}.log").read_text()
        lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
        assert lines, f"worker {index} of {name} printed no result:\n{output[-3000:]}"
        results.append(json.loads(lines[-1][len("RESULT "):]))
    return results


def test_canary_keras_still_averages_scalars_over_workers_along_axis_0(tmp_path):
    """tensorflow/tensorflow#72388, reached through Keras' reduce_per_replica (with bug 1 fixed)."""
    without = fit_on_two_workers([keras_fixes.BUILD_FIX], tmp_path, "without-reduce-fix")
    if not all("error" in result for result in without):
        pytest.fail(f"Keras {keras.__version__} now averages scalar metrics over several workers: drop REDUCE_FIX "
                    f"(_reduce_per_replica) from trainer/keras_fixes.py and this canary ({without})")
    assert all("Invalid reduction dimension 0 for input with 0 dimensions" in result["error"] for result in without)
    fixed = fit_on_two_workers(list(keras_fixes.FIXES), tmp_path, "with-both-fixes")
    assert all(np.isfinite(result.get("loss", np.nan)) for result in fixed), fixed
    assert fixed[0]["loss"] == pytest.approx(fixed[1]["loss"])  # one average over both workers


# --- The resumed epoch (trainer/checkpoints.py) ---------------------------------------------------------

class StartAt(keras.callbacks.Callback):
    """Sets the start epoch in on_train_begin, as checkpoints.EpochBackup does when it restores a backup."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch
        self.epochs_run = []

    def on_train_begin(self, logs=None):
        self.model._initial_epoch = self.epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs_run.append(epoch)


def test_canary_fit_still_starts_at_the_epoch_a_callback_sets_on_train_begin():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    callback = StartAt(2)
    model.fit(np.zeros((4, 3), "float32"), np.zeros((4, 1), "float32"), epochs=4, verbose=0, callbacks=[callback])
    assert callback.epochs_run == [2, 3], (
        f"Keras {keras.__version__} no longer starts fit at model._initial_epoch: checkpoints.EpochBackup needs "
        "another way to resume an interrupted fit")
