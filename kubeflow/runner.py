"""Compiles the selfsup pipeline for Kubeflow Pipelines (v2) and Vertex AI Pipelines.

The factory is the local runner's (`pipeline.pipeline.create_pipeline`); TFX's KubeflowV2DagRunner
compiles it into a KFP pipeline spec (schema 2.1) whose every step runs `config.kubeflow.image`:

    OUTPUT.yaml / OUTPUT.yml   the PipelineSpec (what KFP uploads and Vertex AI runs)
    OUTPUT.json                a PipelineJob: the PipelineSpec plus a runtimeConfig

Runtime parameters (set per run; the defaults come from the config file). TFX 1.16 turns only a
whole str/int/float execution property into a runtime parameter (a RuntimeParameter nested in a
dict such as the Trainer's custom_config is frozen as text, not declared), so the structured
settings travel as JSON strings:

    data_path                ImageExampleGen: where the images are
    data_config              ImageExampleGen: the rest of the `data:` section
    pretrainer_custom_config Pretrainer: the `training:` settings pretraining reads, and role
    candidate_custom_config  CandidateTrainer: the `training:` section (method, epochs, ...) and role
    baseline_custom_config   BaselineTrainer: the same, for the supervised baseline
    eval_config              Evaluator: the TFMA EvalConfig holding the blessing thresholds

Everything else (image, pipeline root, serving folder, Beam arguments, Trainer distribution,
caching, the component graph) is fixed when compiling.

ImageExampleGen's container gets a `lifecycle.preCacheCheck` hook
(components/image_example_gen/kubeflow_driver.py) that adds the fingerprint of the input files to
the task's parameters before the backend's cache check, as TFX does for its FileBasedExampleGen:
changed data re-runs ingestion on the cluster too.
"""

import dataclasses
import json
import os
import posixpath
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.extensions.google_cloud_ai_platform import constants as vertex_constants
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor
from tfx.orchestration import data_types

from components.image_example_gen.component import ImageExampleGen
from components.image_example_gen.kubeflow_driver import DRIVER_COMMAND
from pipeline.config import Config, DataConfig, KubeflowConfig, require_object_storage
from pipeline.pipeline import create_pipeline
from trainer import contract, log
from trainer.hparams import require

LOG = log.get(__name__)

SPEC_EXTENSIONS = (".yaml", ".yml", ".json")
KFP_PIPELINE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
DATA_PATH_PARAMETER = "data_path"
# Every TFX Trainer of the pipeline; each gets the kubeflow.trainer_* machine settings.
TRAINER_IDS = tuple(contract.TRAINER_OF_ROLE[role] for role in contract.ROLES)
ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


class JsonParameter(NamedTuple):
    """An execution property that the compiled pipeline takes as a JSON-string runtime parameter."""

    component_id: str
    property_name: str
    parameter_name: str
    description: str


JSON_PARAMETERS = (
    JsonParameter(contract.IMAGE_EXAMPLE_GEN, "data_config", "data_config",
                  "The data: section as JSON (source, class names, TFDS splits, eval fraction); path is data_path."),
    JsonParameter(contract.CANDIDATE_TRAINER, "custom_config", "candidate_custom_config",
                  "The candidate Trainer's custom_config JSON: the training: section (method, epochs, ...) and role."),
    JsonParameter(contract.PRETRAINER, "custom_config", "pretrainer_custom_config",
                  "The Pretrainer's custom_config JSON: the training: settings pretraining reads, and role."),
    JsonParameter(contract.BASELINE_TRAINER, "custom_config", "baseline_custom_config",
                  "The baseline Trainer's custom_config JSON: the training: section and role."),
    JsonParameter(contract.EVALUATOR, "eval_config", "eval_config",
                  "TFMA EvalConfig JSON: the blessing thresholds (accuracy floor, margin over the baseline)."),
)


def check_compilable(config: Config, output_file: Optional[str] = None) -> None:
    """Checks what only compiling for a cluster needs; raises ConfigError naming the key.

    Args:
      config: the validated configuration.
      output_file: the spec file to write (its extension picks the format), if known.

    Raises:
      ConfigError: a missing or unusable setting.
      ValueError: `output_file` has an unknown extension.
    """
    kubeflow = config.kubeflow
    if output_file is not None and not output_file.endswith(SPEC_EXTENSIONS):
        raise ValueError(f"the pipeline spec file must end with one of {list(SPEC_EXTENSIONS)}, got {output_file!r}")
    require(kubeflow.pipeline_root is not None, "kubeflow.pipeline_root",
            "is required to compile for Kubeflow (e.g. gs://BUCKET/selfsup)")
    require(kubeflow.image is not None, "kubeflow.image",
            "is required to compile for Kubeflow: the image built from kubeflow/Dockerfile")
    require(
        KFP_PIPELINE_NAME.fullmatch(config.pipeline.name) is not None,
        "pipeline.name",
        f"must be lower-case letters, digits and '-' to compile for Kubeflow, got {config.pipeline.name!r}",
    )
    require_object_storage(config.data.path, "data.path")
    require_object_storage(config.data.tfds_data_dir, "data.tfds_data_dir")


def _warn_if_mutable_image(image: str) -> None:
    name = image.rsplit("/", 1)[-1]
    if "@" not in image and (":" not in name or name.endswith(":latest")):
        LOG.warning(
            "kubeflow.image %r has no fixed tag: a run would use whatever the tag points to when its pods "
            "start. Push a version tag (e.g. :0.1.0 or the git commit) or use a digest (@sha256:...).", image)


def _data_path_default(data: DataConfig) -> Optional[str]:
    """data.path; for a source that reads no path (TFDS reads tfds_data_dir) an unused empty default; otherwise
    required per run."""
    if data.path is not None:
        return data.path
    return None if data.reads_path else ""


def _vertex_custom_job(kubeflow: KubeflowConfig) -> Dict[str, Any]:
    """The custom_config keys with which TFX's Vertex Trainer executor starts a multi-worker custom job.

    Worker pool 0 is the chief, pool 1 the other workers; Vertex AI sets TF_CONFIG in each replica.
    """
    machine_spec = {"machine_type": kubeflow.trainer_machine_type}
    if kubeflow.trainer_accelerator_type:
        machine_spec.update(accelerator_type=kubeflow.trainer_accelerator_type,
                            accelerator_count=kubeflow.trainer_accelerator_count)
    pools = [
        {"machine_spec": machine_spec, "replica_count": replicas, "container_spec": {"image_uri": kubeflow.image}}
        for replicas in (1, kubeflow.trainer_workers - 1)
    ]
    return {
        vertex_constants.ENABLE_VERTEX_KEY: True,
        vertex_constants.VERTEX_REGION_KEY: kubeflow.vertex_region,
        vertex_trainer_executor.TRAINING_ARGS_KEY: {
            "project": kubeflow.vertex_project,
            "job_spec": {"worker_pool_specs": pools},
        },
    }


def trainer_custom_config(kubeflow: KubeflowConfig) -> Dict[str, Any]:
    """The distribution keys added to both Trainers' custom_config on the cluster."""
    custom_config: Dict[str, Any] = {}
    if kubeflow.trainer_strategy:
        custom_config["strategy"] = kubeflow.trainer_strategy
    if kubeflow.trainer_workers > 1:
        custom_config.update(_vertex_custom_job(kubeflow))
    return custom_config


def _trainer_pod_resources(kubeflow: KubeflowConfig) -> Optional[ResourceSpec]:
    resources = ResourceSpec()
    if kubeflow.trainer_cpu_limit:
        resources.cpu_limit = kubeflow.trainer_cpu_limit
    if kubeflow.trainer_memory_limit:
        resources.memory_limit = kubeflow.trainer_memory_limit
    if kubeflow.trainer_accelerator_type:
        resources.accelerator.type = kubeflow.trainer_accelerator_type
        resources.accelerator.count = kubeflow.trainer_accelerator_count
    return resources if resources.ByteSize() else None


def _configure_trainer(trainer: tfx.components.Trainer, kubeflow: KubeflowConfig) -> None:
    """One Trainer step: its own pod (sized by the resource limits) or a Vertex AI multi-worker job.

    TFX's Vertex AI Trainer is the standard Trainer with another executor class, which reads the
    custom_config keys of `_vertex_custom_job`; swapping the executor keeps the factory unchanged.
    """
    if kubeflow.trainer_workers > 1:
        trainer.executor_spec = executor_spec.ExecutorClassSpec(vertex_trainer_executor.GenericExecutor)
        return
    resources = _trainer_pod_resources(kubeflow)
    if resources is not None:
        trainer.with_platform_config(resources)


def _expose_as_runtime_parameter(component, parameter: JsonParameter) -> data_types.RuntimeParameter:
    """Replaces an execution property by a str RuntimeParameter whose default is the compiled JSON."""
    compiled_value = component.exec_properties[parameter.property_name]
    if not isinstance(compiled_value, str):
        raise ValueError(
            f"{parameter.component_id}.{parameter.property_name} compiled to {type(compiled_value).__name__}, "
            "not the JSON string a runtime parameter needs"
        )
    runtime_parameter = data_types.RuntimeParameter(
        name=parameter.parameter_name, ptype=str, default=compiled_value, description=parameter.description
    )
    component.exec_properties[parameter.property_name] = runtime_parameter
    return runtime_parameter


def build_pipeline(config: Config) -> Tuple[tfx.dsl.Pipeline, List[data_types.RuntimeParameter]]:
    """The factory's pipeline with the runtime parameters and cluster settings applied.

    Args:
      config: a configuration that passes `check_compilable`.

    Returns:
      The pipeline and its runtime parameters (with their defaults from `config`).
    """
    kubeflow = config.kubeflow
    data_path = data_types.RuntimeParameter(
        name=DATA_PATH_PARAMETER, ptype=str, default=_data_path_default(config.data),
        description="Where the images are (gs://... or s3://...): the folder or TFRecord root of data.source.",
    )
    pipeline = create_pipeline(
        config=dataclasses.replace(config, data=dataclasses.replace(config.data, path=None)),
        pipeline_root=kubeflow.pipeline_root,
        serving_dir=kubeflow.serving_dir or posixpath.join(kubeflow.pipeline_root, "serving"),
        metadata_connection_config=None,
        data_path=data_path,
        beam_pipeline_args=kubeflow.beam_args,
        trainer_custom_config=trainer_custom_config(kubeflow),
    )
    components = {component.id: component for component in pipeline.components}
    parameters = [data_path] + [
        _expose_as_runtime_parameter(components[parameter.component_id], parameter) for parameter in JSON_PARAMETERS
    ]
    for trainer_id in TRAINER_IDS:
        _configure_trainer(components[trainer_id], kubeflow)
    return pipeline, parameters


def runtime_parameter_values(config: Config) -> Dict[str, str]:
    """The runtime parameter values of `config`, to pass to a run of an already compiled pipeline.

    E.g. `aiplatform.PipelineJob(..., parameter_values=runtime_parameter_values(load_config("run.yaml")))`.
    """
    check_compilable(config)
    _, parameters = build_pipeline(config)
    return _defaults(parameters)


def _defaults(parameters: List[data_types.RuntimeParameter]) -> Dict[str, str]:
    return {parameter.name: parameter.default for parameter in parameters if parameter.default is not None}


def _declare_defaults(pipeline_spec: Dict[str, Any], parameters: List[data_types.RuntimeParameter],
                      pipeline_root: str) -> Dict[str, Any]:
    """Adds what TFX 1.16 leaves out of the spec: parameter defaults and descriptions, the pipeline root."""
    spec = json_format.ParseDict(pipeline_spec, pipeline_spec_pb2.PipelineSpec())
    spec.default_pipeline_root = pipeline_root
    for parameter in parameters:
        declared = spec.root.input_definitions.parameters[parameter.name]
        declared.description = parameter.description
        if parameter.default is not None:
            declared.default_value.string_value = parameter.default
            declared.is_optional = True
    return json_format.MessageToDict(spec)


def _add_fingerprint_hooks(pipeline_spec: Dict[str, Any], component_ids: List[str]) -> None:
    """Sets the input-fingerprint driver as the pre-cache-check hook of these components' containers.

    Mirrors TFX's `_build_file_based_example_gen_spec`: the hook gets the container's own arguments
    after the executor class (the invocation placeholder, the inputs spec, the Beam arguments).
    """
    for component_id in component_ids:
        executor_label = pipeline_spec["components"][component_id]["executorLabel"]
        container = pipeline_spec["deploymentSpec"]["executors"][executor_label]["container"]
        if container["args"][:1] != ["--executor_class_path"]:
            raise ValueError(f"{component_id}'s container arguments do not start with --executor_class_path: "
                             f"{container['args'][:2]}")
        container["lifecycle"] = {"preCacheCheck": {"command": list(DRIVER_COMMAND), "args": container["args"][2:]}}


def _write_spec(pipeline_job: Dict[str, Any], output_file: str) -> None:
    folder = os.path.dirname(output_file)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(output_file, "w", encoding="utf-8") as handle:
        if output_file.endswith((".yaml", ".yml")):
            yaml.safe_dump(pipeline_job["pipelineSpec"], handle, sort_keys=True)
        else:
            json.dump(pipeline_job, handle, indent=1, sort_keys=True)


def compile_pipeline(config: Config, output_file: str) -> str:
    """Compiles the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines.

    Args:
      config: the validated configuration, with a complete `kubeflow:` section.
      output_file: .yaml/.yml for the PipelineSpec, .json for a PipelineJob.

    Returns:
      The path of the written spec.

    Raises:
      ConfigError: naming a missing or unusable key; ValueError for an unknown file extension.
    """
    check_compilable(config, output_file)
    _warn_if_mutable_image(config.kubeflow.image)
    pipeline, parameters = build_pipeline(config)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=config.kubeflow.image, use_pipeline_spec_2_1=True
        )
    )
    pipeline_job = runner.run(pipeline, parameter_values=_defaults(parameters), write_out=False)
    pipeline_job["pipelineSpec"] = _declare_defaults(pipeline_job["pipelineSpec"], parameters,
                                                     config.kubeflow.pipeline_root)
    _add_fingerprint_hooks(pipeline_job["pipelineSpec"], [
        component.id for component in pipeline.components if isinstance(component, ImageExampleGen)])
    _write_spec(pipeline_job, output_file)
    return output_file


def load_pipeline_spec(spec_file: str) -> pipeline_spec_pb2.PipelineSpec:
    """Reads a spec written by `compile_pipeline` (YAML PipelineSpec or JSON PipelineJob)."""
    with open(spec_file, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if spec_file.endswith(".json"):
        document = document["pipelineSpec"]
    return json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())
