"""BlessingGate executor: writes the combined blessing."""

import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.evaluator import constants
from tfx.components.util.model_utils import is_model_blessed
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.blessing_gate.gate import gate_blesses
from components.model_comparison import read_comparison
from trainer import log

LOG = log.get(__name__)

BLESSING_KEYS = ("baseline_blessing", "production_blessing")


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        model = artifact_utils.get_single_instance(input_dict["model"])
        blessings = {key: artifact_utils.get_single_instance(input_dict[key])
                     for key in BLESSING_KEYS if input_dict.get(key)}
        comparison = (read_comparison(artifact_utils.get_single_uri(input_dict["comparison"]))
                      if input_dict.get("comparison") else None)
        blessed = gate_blesses(blessings.values(), comparison)
        significance = ("" if comparison is None else
                        f", difference {comparison['difference']:+.4f} with McNemar p={comparison['p_value']:.4g} "
                        f"(significant improvement required at {comparison['significance_level']:g})")
        LOG.info("BlessingGate: %s%s -> %s", {key: is_model_blessed(value) for key, value in blessings.items()},
                     significance, "BLESSED" if blessed else "NOT BLESSED")
        output = artifact_utils.get_single_instance(output_dict["blessing"])
        marker = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
        io_utils.write_string_file(os.path.join(output.uri, marker), "")
        value = constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE
        output.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, value)
        output.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
        output.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
