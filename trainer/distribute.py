"""The tf.distribute strategy from the config and the environment, and what each worker writes.

`training.strategy` is one of `trainer.hparams.STRATEGIES`; `auto` picks a TPU when
`training.tpu_address` is set, MultiWorkerMirroredStrategy when TF_CONFIG names more than one
worker, MirroredStrategy when more than one GPU is visible, and the default strategy otherwise.
`training.batch_size` is the global batch: Keras splits each batch across the replicas.
"""

import contextlib
import functools
import json
import os
import shutil
import tempfile
from typing import Dict, Iterator, Optional

import tensorflow as tf

from trainer import log

LOG = log.get(__name__)


def _tf_config() -> dict:
    try:
        return json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error


def worker_count() -> int:
    """The number of chief and worker tasks in TF_CONFIG's cluster (0 without TF_CONFIG)."""
    cluster = _tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def is_chief() -> bool:
    """True on the single worker that writes the model, logs and summaries.

    That is the `chief` task when TF_CONFIG's cluster has one, otherwise worker 0; any process
    without TF_CONFIG, or in a cluster of one worker, is the chief.
    """
    task = _tf_config().get("task", {})
    if not task or worker_count() <= 1:
        return True
    cluster = _tf_config().get("cluster", {})
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def choose_strategy_name(strategy: str, tpu_address: Optional[str], gpu_count: int, workers: int) -> str:
    """Resolves `auto` to a strategy name; any other name is returned as it is.

    Args:
      strategy: `training.strategy`, one of `trainer.hparams.STRATEGIES`.
      tpu_address: `training.tpu_address`, or None.
      gpu_count: the number of GPUs this process sees.
      workers: the number of workers in TF_CONFIG (`worker_count()`).

    Returns:
      "tpu" (an address is set), "multi_worker" (more than one worker), "mirrored" (more than one
      GPU) or "default", for `auto`.
    """
    if strategy != "auto":
        return strategy
    if tpu_address:
        return "tpu"
    if workers > 1:
        return "multi_worker"
    if gpu_count > 1:
        return "mirrored"
    return "default"


def build_strategy(strategy: str, tpu_address: Optional[str] = None) -> tf.distribute.Strategy:
    """The strategy named by `training.strategy` (after `auto` is resolved); logs it and its replica count.

    Call it before any other TensorFlow operation runs: MultiWorkerMirroredStrategy must configure
    the collective operations at program start. Keras' `fit` under a strategy of several replicas needs
    the fixes of trainer/keras_fixes.py (`keras_fixes.strategy_fixes`, around each fit).

    Raises:
      ValueError: an unknown strategy name.
    """
    name = choose_strategy_name(strategy, tpu_address, len(tf.config.list_physical_devices("GPU")), worker_count())
    if name == "default":
        chosen = tf.distribute.get_strategy()
    else:
        chosen = _create_strategy(name, tpu_address)
    LOG.info("distribution strategy: %s (%s), replicas: %d", name, type(chosen).__name__, chosen.num_replicas_in_sync)
    return chosen


@functools.lru_cache(maxsize=None)
def _create_strategy(name: str, tpu_address: Optional[str]) -> tf.distribute.Strategy:
    """One strategy per name and process, shared by every Trainer the process runs.

    The local runner runs both Trainers in one process. A second MirroredStrategy would number its
    collective operations from the same keys as the first and clash with them, and collective
    operations (MultiWorkerMirroredStrategy) or a TPU system can be set up only once per process.
    """
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"config key 'training.strategy': unknown strategy {name!r}")


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with the DATA auto-shard policy for multi-worker training.

    Every worker reads all the files and keeps its replicas' share of each global batch, so every
    worker runs the same number of steps, whatever the number and sizes of the TFRecord files
    (FILE sharding needs at least as many files as workers, and files of equal sizes, or the
    workers fall out of step). The cost is that each worker reads the whole split.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@contextlib.contextmanager
def writable_folders(**chief_folders: str) -> Iterator[Dict[str, str]]:
    """The folders this worker writes to, by name.

    On the chief, `chief_folders` itself. On every other worker, the same names mapped to
    sub-folders of one new local temporary folder, removed (with everything written there) on exit.
    Non-chief workers still write (export, checkpoints) because those can run collective operations
    in which every worker must take part.

    Args:
      **chief_folders: the chief's output folders, e.g. `serving_model_dir=..., log_dir=...`.

    Yields:
      A dict with the same keys.
    """
    if is_chief():
        yield dict(chief_folders)
        return
    scratch = tempfile.mkdtemp(prefix="selfsup-worker-")
    try:
        yield {name: os.path.join(scratch, name) for name in chief_folders}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns on every worker only once all workers have reached it (an all-reduce of one number).

    Does nothing without several workers in TF_CONFIG.
    """
    if worker_count() <= 1:
        return
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)
