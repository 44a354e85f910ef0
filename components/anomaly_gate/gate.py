"""Reads ExampleValidator's anomalies and fails on any (stock TFX only records them)."""

import os
from typing import Dict, List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2

from trainer.contract import SPLIT_FOLDER_PREFIX

ANOMALIES_FILE = "SchemaDiff.pb"


def read_anomalies(anomalies_uri: str, splits: List[str]) -> Dict[str, List[str]]:
    """{split: ["feature 'x': description", ...]} for every split with anomalies."""
    found = {}
    for split in splits:
        path = os.path.join(anomalies_uri, SPLIT_FOLDER_PREFIX + split, ANOMALIES_FILE)
        if not tf.io.gfile.exists(path):
            raise ValueError(f"anomalies file missing for split {split!r}: {path}")
        anomalies = anomalies_pb2.Anomalies()
        with tf.io.gfile.GFile(path, "rb") as handle:
            anomalies.ParseFromString(handle.read())
        problems = [
            f"feature {name!r}: {info.short_description or info.description}"
            for name, info in sorted(anomalies.anomaly_info.items())
        ]
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            problems.append(f"dataset: {info.short_description or info.description}")
        if problems:
            found[split] = problems
    return found


def raise_on_anomalies(found: Dict[str, List[str]], anomalies_uri: str) -> None:
    if found:
        details = "; ".join(f"{split}: {', '.join(problems)}" for split, problems in sorted(found.items()))
        raise ValueError(
            f"data validation found anomalies, so training does not start: {details}. "
            f"Details: {anomalies_uri}/{SPLIT_FOLDER_PREFIX}*/{ANOMALIES_FILE}"
        )
