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
from components.evaluation_report.run_outputs import pushed_destination, pushed_production_model
from trainer import contract

REPORT_DATA_FILE = "report_data.json"
DECISION_PROPERTY = "decision"  # the report artifact's custom property: the decision's sentence


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
            pushed_to=pushed_destination(_mlmd_artifacts(input_dict, "pushed_model")),
            production_evaluation_uri=_optional_uri(input_dict.get("production_evaluation", [])),
            production_model=pushed_production_model(_mlmd_artifacts(input_dict, "production_model")),
            comparison_uri=_optional_uri(input_dict.get("comparison", [])),
            pretrained_model_uri=_optional_uri(input_dict.get("pretrained_model", [])),
            examples_uri=_optional_uri(input_dict.get("examples", [])),
        )
        report = artifact_utils.get_single_instance(output_dict["report"])
        data = collect_report_data(inputs)
        write_report_files(data, report.uri)
        report.set_string_custom_property(DECISION_PROPERTY, data["decision"]["text"])


def _optional_uri(artifacts: List[types.Artifact]) -> Optional[str]:
    return artifacts[0].uri if artifacts else None


def _mlmd_artifacts(input_dict: Dict[str, List[types.Artifact]], key: str):
    """The MLMD protos of an optional input (what pipeline/results reads from MLMD for a finished run)."""
    return [artifact.mlmd_artifact for artifact in input_dict.get(key, [])]


def write_report_files(data: Dict[str, Any], folder: str) -> str:
    """Writes report.html and report_data.json into `folder`; returns the report's path."""
    tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(os.path.join(folder, REPORT_DATA_FILE), "w") as handle:
        json.dump(data, handle, indent=1)
    report_path = os.path.join(folder, contract.REPORT_FILE)
    with tf.io.gfile.GFile(report_path, "w") as handle:
        handle.write(render_html(data))
    return report_path
