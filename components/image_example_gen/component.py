"""ImageExampleGen component: spec and component class."""

from typing import Optional, Union

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.artifacts import IngestReport
from components.image_example_gen import executor
from components.image_example_gen.driver import InputFingerprintDriver


class ImageExampleGenSpec(ComponentSpec):
    PARAMETERS = {
        # The `data:` config section as JSON (data_config.DataConfig; the executor rebuilds it with from_dict).
        "data_config": ExecutionParameter(type=str),
        # Overrides the data config's path; a runtime parameter on Kubeflow.
        "data_path": ExecutionParameter(type=str, optional=True),
        # evaluation.min_eval_per_class: fewer eval images of a class fail ingestion, before training.
        "min_eval_per_class": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "report": ChannelParameter(type=IngestReport),
    }


class ImageExampleGen(base_beam_component.BaseBeamComponent):
    """Reads images, skips (and reports) undecodable ones, writes unlabeled/train/eval tf.Examples.

    Each example has `image` (the original encoded bytes), `label` (int64 index into the class
    names, -1 when unlabeled) and `path` (where the image came from). The class names are written
    to `class_names.json` beside the splits so that every later step uses the same label mapping.
    """

    SPEC_CLASS = ImageExampleGenSpec
    # Fingerprints the input before the cache check: changed data re-runs ingestion (driver.py).
    DRIVER_CLASS = InputFingerprintDriver
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, data_config: str, data_path: Optional[Union[str, data_types.RuntimeParameter]] = None,
                 min_eval_per_class: Optional[int] = None):
        super().__init__(ImageExampleGenSpec(
            data_config=data_config,
            data_path=data_path,
            min_eval_per_class=min_eval_per_class,
            examples=types.Channel(type=standard_artifacts.Examples),
            report=types.Channel(type=IngestReport),
        ))
