"""EvaluationReportGen executor: resolves artifact folders, then collects, renders and writes the report."""

import json
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.evaluation_report.html_report import render_html
from components.evaluation_report.report_data import ReportInputs, collect_report_data
from components.production_model.executor import pushed_production_model

REPORT_FILE = "report.html"
REPORT_DATA_FILE = "report_data.json"
# The Pusher's custom properties on its PushedModel output.
PUSHED_PROPERTY, PUSHED_DESTINATION_PROPERTY = "pushed", "pushed_destination"


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        inputs = ReportInputs(
            evaluation_uri=artifact_utils.get_single_uri(input_dict["evaluation"]),
            blessing_uri=artifact_utils.get_single_uri(input_dict["blessing"]),
            candidate_model_uri=artifact_utils.get_single_uri(input_dict["candidate_model"]),
            baseline_model_uri=artifact_utils.get_single_uri(input_dict["baseline_model"]),
            ingest_report_uri=artifact_utils.get_single_uri(input_dict["ingest_report"]),
            pushed_to=pushed_destination(input_dict.get("pushed_model", [])),
            production_evaluation_uri=_optional_uri(input_dict.get("production_evaluation", [])),
            production_model=pushed_production_model(input_dict.get("production_model", [])),
            comparison_uri=_optional_uri(input_dict.get("comparison", [])),
            pretrained_model_uri=_optional_uri(input_dict.get("pretrained_model", [])),
            examples_uri=_optional_uri(input_dict.get("examples", [])),
        )
        report = artifact_utils.get_single_instance(output_dict["report"])
        data = collect_report_data(inputs)
        write_report_files(data, report.uri)
        report.set_string_custom_property("decision", data["decision"]["text"])


def _optional_uri(artifacts: List[types.Artifact]) -> Optional[str]:
    return artifacts[0].uri if artifacts else None


def pushed_destination(pushed_models: List[types.Artifact]) -> Optional[str]:
    """Where the Pusher copied the model, or None when it pushed nothing (or did not run)."""
    for pushed_model in pushed_models:
        if pushed_model.get_int_custom_property(PUSHED_PROPERTY):
            return pushed_model.get_string_custom_property(PUSHED_DESTINATION_PROPERTY)
    return None


def write_report_files(data: Dict[str, Any], folder: str) -> str:
    """Writes report.html and report_data.json into `folder`; returns the report's path."""
    tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(os.path.join(folder, REPORT_DATA_FILE), "w") as handle:
        json.dump(data, handle, indent=1)
    report_path = os.path.join(folder, REPORT_FILE)
    with tf.io.gfile.GFile(report_path, "w") as handle:
        handle.write(render_html(data))
    return report_path
