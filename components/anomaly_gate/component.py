"""AnomalyGate component: its `validated_schema` output exists only when the data has no
anomalies, so the components that take it (both Trainers) never start on anomalous data."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from components.anomaly_gate import executor


class AnomalyGateSpec(ComponentSpec):
    PARAMETERS = {}
    INPUTS = {
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
    }
    OUTPUTS = {"validated_schema": ChannelParameter(type=standard_artifacts.Schema)}


class AnomalyGate(base_component.BaseComponent):
    SPEC_CLASS = AnomalyGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, anomalies: types.BaseChannel, schema: types.BaseChannel):
        super().__init__(AnomalyGateSpec(
            anomalies=anomalies, schema=schema,
            validated_schema=types.Channel(type=standard_artifacts.Schema),
        ))
