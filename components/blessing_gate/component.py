"""BlessingGate component: one ModelBlessing for the Pusher that holds only when every condition held."""

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from components.artifacts import ModelComparison
from components.blessing_gate import executor


class BlessingGateSpec(ComponentSpec):
    PARAMETERS = {}
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "production_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
        "comparison": ChannelParameter(type=ModelComparison, optional=True),
    }
    OUTPUTS = {"blessing": ChannelParameter(type=standard_artifacts.ModelBlessing)}


class BlessingGate(base_component.BaseComponent):
    """TFX's Pusher takes one blessing; this one is blessed when the candidate beat the supervised
    baseline (`baseline_blessing`), the model in production (`production_blessing`, with
    evaluation.compare_to_pushed) and, given PairedComparison's `comparison` (with
    evaluation.require_significant), is more accurate than the baseline with a McNemar p-value below
    the significance level. It is written the way the Evaluator writes its own: a BLESSED or
    NOT_BLESSED file and the `blessed`, `current_model` and `current_model_id` custom properties."""

    SPEC_CLASS = BlessingGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, baseline_blessing: types.BaseChannel,
                 production_blessing: Optional[types.BaseChannel] = None,
                 comparison: Optional[types.BaseChannel] = None):
        if production_blessing is None and comparison is None:
            raise ValueError("BlessingGate needs a production_blessing or a comparison besides the baseline_blessing")
        super().__init__(BlessingGateSpec(
            model=model,
            baseline_blessing=baseline_blessing,
            production_blessing=production_blessing,
            comparison=comparison,
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        ))
