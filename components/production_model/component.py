"""ProductionModel component: the model a candidate has to beat to replace what is in production."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.production_model import executor


class ProductionModelSpec(ComponentSpec):
    PARAMETERS = {"serving_dir": ExecutionParameter(type=str)}
    INPUTS = {
        "candidate_model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {"model": ChannelParameter(type=standard_artifacts.Model)}


class ProductionModel(base_component.BaseComponent):
    """Copies the latest pushed model (SERVING_DIR/<version>) into a Model artifact for the Evaluator.

    When nothing has been pushed yet there is no production model to protect, and the output is a
    copy of the supervised baseline, so the comparison repeats the baseline rule. The candidate
    model is an input so that this step runs after training and again whenever the candidate
    changes. The output's custom properties `source` ("pushed" or "supervised_baseline") and
    `production_model` (the folder copied) say which it was.
    """

    SPEC_CLASS = ProductionModelSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, candidate_model: types.BaseChannel, baseline_model: types.BaseChannel, serving_dir: str):
        super().__init__(ProductionModelSpec(
            candidate_model=candidate_model,
            baseline_model=baseline_model,
            serving_dir=serving_dir,
            model=types.Channel(type=standard_artifacts.Model),
        ))
