"""AnomalyGate executor: fails on anomalies, otherwise passes the schema on."""

from typing import Any, Dict, List

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.anomaly_gate.gate import raise_on_anomalies, read_anomalies


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        anomalies = artifact_utils.get_single_instance(input_dict["anomalies"])
        splits = artifact_utils.decode_split_names(anomalies.split_names)
        raise_on_anomalies(read_anomalies(anomalies.uri, splits), anomalies.uri)
        schema_file = io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(input_dict["schema"]))
        output_uri = artifact_utils.get_single_uri(output_dict["validated_schema"])
        tf.io.gfile.copy(schema_file, output_uri.rstrip("/") + "/schema.pbtxt", overwrite=True)
