"""Chooses the tf.distribute strategy from the config and the environment."""

import json
import logging
import os

import tensorflow as tf


def _tf_config() -> dict:
    try:
        return json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error


def worker_count() -> int:
    cluster = _tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def is_chief() -> bool:
    """True on the single worker that writes the model, logs and summaries."""
    task = _tf_config().get("task", {})
    if not task or worker_count() <= 1:
        return True
    cluster = _tf_config().get("cluster", {})
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def choose_strategy_name(strategy: str, tpu_address, gpu_count: int, workers: int) -> str:
    """`auto` resolves to tpu (an address is set), multi_worker (TF_CONFIG has >1 worker),
    mirrored (>1 GPU) or default; any other value is returned as it is."""
    if strategy != "auto":
        return strategy
    if tpu_address:
        return "tpu"
    if workers > 1:
        return "multi_worker"
    if gpu_count > 1:
        return "mirrored"
    return "default"


def build_strategy(strategy: str, tpu_address=None) -> tf.distribute.Strategy:
    """The strategy named by `training.strategy` (after `auto` is resolved); logs it."""
    name = choose_strategy_name(strategy, tpu_address, len(tf.config.list_physical_devices("GPU")), worker_count())
    if name == "default":
        chosen = tf.distribute.get_strategy()
    elif name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        chosen = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    elif name == "mirrored":
        chosen = tf.distribute.MirroredStrategy()
    elif name == "multi_worker":
        chosen = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        chosen = tf.distribute.TPUStrategy(resolver)
    else:
        raise ValueError(f"config key 'training.strategy': unknown strategy {name!r}")
    message = f"[selfsup] distribution strategy: {name} ({type(chosen).__name__}), replicas: {chosen.num_replicas_in_sync}"
    logging.info(message)
    print(message, flush=True)
    return chosen
