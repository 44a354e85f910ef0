"""ImageExampleGen's driver: adds the input fingerprint to the execution properties before the cache check.

The launcher of TFX's portable orchestrators (LocalDagRunner, and the Kubeflow v1 runner) runs a
component's driver before it computes the cache key, and the key includes the execution properties
the driver returns: the same mechanism as TFX's FileBasedExampleGen driver. On Kubeflow Pipelines v2
the same computation runs as the pre-cache-check hook (`kubeflow_driver.py`).
"""

import dataclasses
import json
from typing import Dict, Optional, Tuple

from tfx.dsl.components.base import base_driver
from tfx.orchestration import data_types_utils, metadata
from tfx.orchestration.portable import base_driver as portable_base_driver
from tfx.orchestration.portable import data_types as portable_data_types
from tfx.proto.orchestration import driver_output_pb2

from components.image_example_gen.data_config import DataConfig
from components.image_example_gen.fingerprint import input_fingerprint
from components.image_example_gen.sources import SourcePlan, plan_source
from trainer.contract import INPUT_FINGERPRINT_PROPERTY

# The plan behind the fingerprint this process computed last, by (data config, fingerprint): the launcher runs
# the driver and then, on a cache miss, the executor in the same process (LocalDagRunner), which takes it
# instead of listing the data again; an executor in another process (Kubeflow) plans on its own.
_PLANNED: Dict[Tuple[str, str], SourcePlan] = {}


def data_config_of(exec_properties: dict) -> DataConfig:
    """The validated `data:` section the executor reads: data_config rebuilt, data_path overriding its path."""
    data = DataConfig.from_dict(json.loads(exec_properties["data_config"]))
    if exec_properties.get("data_path"):
        data = dataclasses.replace(data, path=exec_properties["data_path"])
    return data


def _plan_key(data: DataConfig, fingerprint: str) -> Tuple[str, str]:
    return json.dumps(data.to_dict(), sort_keys=True), fingerprint


def fingerprint_exec_property(exec_properties: dict) -> str:
    """The JSON value of the `input_fingerprint` execution property for these properties."""
    data = data_config_of(exec_properties)
    plan = plan_source(data)
    fingerprint = json.dumps(input_fingerprint(plan, data.path or ""), sort_keys=True)
    _PLANNED.clear()
    _PLANNED[_plan_key(data, fingerprint)] = plan
    return fingerprint


def planned_source(data: DataConfig, fingerprint: str) -> Optional[SourcePlan]:
    """The plan that gave `fingerprint` for `data` in this process, if it is the last one made; taken once."""
    return _PLANNED.pop(_plan_key(data, fingerprint), None)


class InputFingerprintDriver(base_driver.BaseDriver, portable_base_driver.BaseDriver):
    """Returns the execution properties plus `input_fingerprint`; the outputs are left as they are.

    Derives from both driver bases as TFX's ExampleGen driver does: the component class requires the
    DSL base, the portable launcher calls `run`.
    """

    def __init__(self, metadata_handle: metadata.Metadata):
        base_driver.BaseDriver.__init__(self, metadata_handle)
        portable_base_driver.BaseDriver.__init__(self, metadata_handle)

    def run(self, execution_info: portable_data_types.ExecutionInfo) -> driver_output_pb2.DriverOutput:
        exec_properties = dict(execution_info.exec_properties)
        exec_properties[INPUT_FINGERPRINT_PROPERTY] = fingerprint_exec_property(exec_properties)
        result = driver_output_pb2.DriverOutput()
        for key, value in exec_properties.items():
            if value is not None:
                data_types_utils.set_metadata_value(result.exec_properties[key], value)
        return result
