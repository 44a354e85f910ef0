"""BlessingGate component: one ModelBlessing for the Pusher that is blessed only when both Evaluators blessed."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from components.blessing_gate import executor


class BlessingGateSpec(ComponentSpec):
    PARAMETERS = {}
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "production_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }
    OUTPUTS = {"blessing": ChannelParameter(type=standard_artifacts.ModelBlessing)}


class BlessingGate(base_component.BaseComponent):
    """TFX's Pusher takes one blessing; this one is blessed when the candidate beat the supervised
    baseline (`baseline_blessing`) and the model in production (`production_blessing`). It is written
    the way the Evaluator writes its own: a BLESSED or NOT_BLESSED file and the `blessed`,
    `current_model` and `current_model_id` custom properties."""

    SPEC_CLASS = BlessingGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, baseline_blessing: types.BaseChannel,
                 production_blessing: types.BaseChannel):
        super().__init__(BlessingGateSpec(
            model=model,
            baseline_blessing=baseline_blessing,
            production_blessing=production_blessing,
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        ))
