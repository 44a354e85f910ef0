"""ProductionModel executor: finds the latest pushed model and copies it (or the baseline) to its output."""

from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from components.production_model.find import latest_pushed_model

PUSHED, SUPERVISED_BASELINE = "pushed", "supervised_baseline"
SOURCE_PROPERTY, PATH_PROPERTY = "source", "production_model"


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        pushed = latest_pushed_model(exec_properties["serving_dir"])
        if pushed is None:
            baseline = artifact_utils.get_single_uri(input_dict["baseline_model"])
            source, folder = SUPERVISED_BASELINE, path_utils.serving_model_path(baseline)
            logging.info("Nothing pushed to %s yet: the candidate is compared with the supervised baseline again.",
                         exec_properties["serving_dir"])
        else:
            source, folder = PUSHED, pushed
            logging.info("The model in production is %s.", pushed)
        output = artifact_utils.get_single_instance(output_dict["model"])
        io_utils.copy_dir(folder, path_utils.serving_model_dir(output.uri))
        output.set_string_custom_property(SOURCE_PROPERTY, source)
        output.set_string_custom_property(PATH_PROPERTY, folder)


def pushed_production_model(production_models: List[types.Artifact]) -> Optional[str]:
    """The pushed folder ProductionModel copied, or None when it copied the supervised baseline (or did not run)."""
    for model in production_models:
        if model.get_string_custom_property(SOURCE_PROPERTY) == PUSHED:
            return model.get_string_custom_property(PATH_PROPERTY)
    return None
