"""ImageExampleGen executor: resolves artifacts, then calls the plain `ingest` function."""

import json
from typing import Any, Dict, List

from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components.image_example_gen.driver import data_config_of, fingerprint_exec_property, planned_source
from components.image_example_gen.folder_layout import SPLIT_ORDER
from components.image_example_gen.ingest import ingest
from trainer.contract import INPUT_FINGERPRINT_PROPERTY


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        data = data_config_of(exec_properties)
        # Computed by the driver before the cache check; computed here when the executor runs alone.
        fingerprint = exec_properties.get(INPUT_FINGERPRINT_PROPERTY) or fingerprint_exec_property(exec_properties)
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        report_artifact = artifact_utils.get_single_instance(output_dict["report"])
        report = ingest(data, examples.uri, report_artifact.uri, self._make_beam_pipeline,
                        input_fingerprint=json.loads(fingerprint),
                        min_eval_per_class=exec_properties.get("min_eval_per_class"),
                        plan=planned_source(data, fingerprint))

        examples.split_names = artifact_utils.encode_split_names(list(SPLIT_ORDER))
        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        examples.set_string_custom_property("class_names", json.dumps(report["class_names"]))
        examples.set_string_custom_property(INPUT_FINGERPRINT_PROPERTY, report["input"]["fingerprint"])
        for split, counts in report["splits"].items():
            report_artifact.set_int_custom_property(f"{split}_written", counts["written"])
            report_artifact.set_int_custom_property(f"{split}_skipped", counts["skipped"])
