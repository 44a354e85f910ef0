"""ProductionModel executor: finds the latest pushed model and copies it (or the baseline) to its output.

The output's custom properties are contract.PRODUCTION_SOURCE_PROPERTY (contract.PRODUCTION_FROM_PUSHED or
contract.PRODUCTION_FROM_BASELINE) and contract.PRODUCTION_MODEL_PROPERTY (the folder copied): the report
and summary.json read them from MLMD (components/evaluation_report/run_outputs.py).
"""

from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from components.production_model.find import latest_pushed_model
from trainer import contract, log

LOG = log.get(__name__)


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
            source, folder = contract.PRODUCTION_FROM_BASELINE, path_utils.serving_model_path(baseline)
            LOG.info("Nothing pushed to %s yet: the candidate is compared with the supervised baseline again.",
                     exec_properties["serving_dir"])
        else:
            source, folder = contract.PRODUCTION_FROM_PUSHED, pushed
            LOG.info("The model in production is %s.", pushed)
        output = artifact_utils.get_single_instance(output_dict["model"])
        io_utils.copy_dir(folder, path_utils.serving_model_dir(output.uri))
        output.set_string_custom_property(contract.PRODUCTION_SOURCE_PROPERTY, source)
        output.set_string_custom_property(contract.PRODUCTION_MODEL_PROPERTY, folder)
