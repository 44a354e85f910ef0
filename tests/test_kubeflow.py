"""The Kubeflow Pipelines (v2) compile and the image recipe.

What can be checked without a cluster, a registry or a Docker daemon: the compiled spec parses with
kfp's own code, holds every component of the local pipeline with the configured image and a command,
declares the runtime parameters, and names no path of this machine; the Dockerfile's base tags match
the lock, and the package built from exactly the files the Dockerfile copies imports every module
path the spec names.
"""

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import tensorflow_model_analysis as tfma
import yaml
from google.protobuf import json_format
from image_samples import write_image_folder
from kfp import components as kfp_components
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.extensions.google_cloud_ai_platform import constants as vertex_constants
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor

from components.image_example_gen import driver as example_gen_driver
from components.image_example_gen import kubeflow_driver
from pipeline.config import load_config
from pipeline.pipeline import TRAINER_RUN_FN, component_ids
from selfsup_kubeflow import runner
from selfsup_kubeflow.cli import add_compile_kubeflow_parser, run_compile_kubeflow
from trainer.hparams import ConfigError
from trainer.run import training_config_from_custom_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "kubeflow" / "Dockerfile"
LOCK_FILE = REPO_ROOT / "requirements" / "lock.txt"
IMAGE = "europe-docker.pkg.dev/example-project/selfsup/selfsup:0.1.0"
PIPELINE_ROOT = "gs://example-bucket/selfsup-root"
DATA_PATH = "gs://example-bucket/images"
BEAM_ARGS = ["--runner=DataflowRunner", "--project=example-project", "--region=europe-west4",
             "--temp_location=gs://example-bucket/beam-tmp", f"--sdk_container_image={IMAGE}"]
RUNTIME_PARAMETERS = {"data_path", "data_config", "pretrainer_custom_config", "candidate_custom_config",
                      "baseline_custom_config", "eval_config"}
CONFIG = {
    "data": {"path": DATA_PATH},
    "training": {"method": "byol", "pretrain_epochs": 3},
    "evaluation": {"min_accuracy": 0.4, "margin": 0.02, "compare_to_pushed": True, "require_significant": True},
    "kubeflow": {"pipeline_root": PIPELINE_ROOT, "image": IMAGE, "beam_args": BEAM_ARGS},
}
VERTEX_TRAINER_EXECUTOR = "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"
TFX_ENTRYPOINT = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
PACKAGE_FILES = ("trainer/run.py", "components/image_example_gen/executor.py", "components/anomaly_gate/executor.py",
                 "pipeline/pipeline.py", "pipeline/configs/demo.yaml", "selfsup_kubeflow/runner.py",
                 "selfsup_kubeflow/cli.py",
                 "components/evaluation_report/templates/report.html.j2")


def write_config(folder: pathlib.Path, values: dict) -> str:
    path = folder / "selfsup.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def with_kubeflow(**settings) -> dict:
    return dict(CONFIG, kubeflow=dict(CONFIG["kubeflow"], **settings))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The spec compiled from CONFIG (a config file in a temp dir): path, text and PipelineSpec."""
    folder = tmp_path_factory.mktemp("kubeflow-compile")
    config = load_config(write_config(folder, CONFIG))
    spec_file = runner.compile_pipeline(config, str(folder / "spec" / "selfsup.yaml"))
    text = pathlib.Path(spec_file).read_text()
    spec = json_format.ParseDict(yaml.safe_load(text), pipeline_spec_pb2.PipelineSpec())
    return {"config": config, "file": spec_file, "text": text, "spec": spec}


def container_of(spec: pipeline_spec_pb2.PipelineSpec, component_id: str) -> dict:
    executors = json_format.MessageToDict(spec.deployment_spec)["executors"]
    return executors[spec.components[component_id].executor_label]["container"]


def root_defaults(spec: pipeline_spec_pb2.PipelineSpec) -> dict:
    return {name: parameter.default_value.string_value
            for name, parameter in spec.root.input_definitions.parameters.items()}


def test_spec_parses_with_kfp_and_holds_every_component(compiled):
    spec = compiled["spec"]
    assert set(spec.root.dag.tasks) == set(component_ids(compiled["config"]))
    assert {"ProductionModel", "ProductionEvaluator", "BlessingGate", "PairedComparison"} <= set(spec.root.dag.tasks)
    assert set(spec.components) >= set(spec.root.dag.tasks)
    serving_dir = spec.root.dag.tasks["ProductionModel"].inputs.parameters["serving_dir"]
    assert serving_dir.runtime_value.constant.string_value == PIPELINE_ROOT + "/serving"  # where the Pusher pushes
    assert spec.schema_version == "2.1.0"
    assert spec.default_pipeline_root == PIPELINE_ROOT
    component = kfp_components.load_component_from_file(compiled["file"])
    assert component.name == "selfsup"
    assert set(component.component_spec.inputs) == RUNTIME_PARAMETERS


def test_every_step_runs_the_configured_image_with_a_command(compiled):
    for component_id in component_ids(compiled["config"]):
        container = container_of(compiled["spec"], component_id)
        assert container["image"] == IMAGE, component_id
        assert container["command"] == TFX_ENTRYPOINT, component_id
        assert container["args"][0] == "--executor_class_path", component_id
        assert container["args"][-len(BEAM_ARGS):] == BEAM_ARGS, component_id


def test_runtime_parameters_are_declared_with_the_config_as_defaults(compiled):
    spec, config = compiled["spec"], compiled["config"]
    declared = spec.root.input_definitions.parameters
    assert set(declared) == RUNTIME_PARAMETERS
    assert all(parameter.parameter_type == pipeline_spec_pb2.ParameterType.STRING for parameter in declared.values())
    assert all(parameter.is_optional and parameter.description for parameter in declared.values())
    defaults = root_defaults(spec)
    assert defaults["data_path"] == DATA_PATH
    assert json.loads(defaults["data_config"])["path"] is None  # the path travels only as data_path
    candidate = json.loads(defaults["candidate_custom_config"])
    assert (candidate["role"], candidate["method"], candidate["pretrain_epochs"]) == ("candidate", "byol", 3)
    baseline = json.loads(defaults["baseline_custom_config"])
    assert baseline["role"] == "baseline" and "method" not in baseline and "pretrain_epochs" not in baseline
    eval_config = json_format.Parse(defaults["eval_config"], tfma.EvalConfig())
    threshold = eval_config.metrics_specs[0].metrics[0].threshold
    assert threshold.value_threshold.lower_bound.value == pytest.approx(0.4)
    assert threshold.change_threshold.absolute.value == pytest.approx(0.02, abs=1e-6)
    wiring = {(task_id, name): value.component_input_parameter
              for task_id, task in spec.root.dag.tasks.items() for name, value in task.inputs.parameters.items()
              if value.component_input_parameter}
    assert wiring == {
        ("ImageExampleGen", "data_path"): "data_path", ("ImageExampleGen", "data_config"): "data_config",
        ("Pretrainer", "custom_config"): "pretrainer_custom_config",
        ("CandidateTrainer", "custom_config"): "candidate_custom_config",
        ("BaselineTrainer", "custom_config"): "baseline_custom_config", ("Evaluator", "eval_config"): "eval_config",
    }
    pretraining = json.loads(defaults["pretrainer_custom_config"])
    assert (pretraining["role"], pretraining["method"], pretraining["pretrain_epochs"]) == ("pretrainer", "byol", 3)
    assert "finetune_epochs" not in pretraining and "labels_per_class" not in pretraining
    assert runner.runtime_parameter_values(config) == defaults


def test_no_path_of_the_compiling_machine_leaks_into_the_spec(compiled, tmp_path_factory):
    local_paths = {str(REPO_ROOT), str(tmp_path_factory.getbasetemp()), os.path.expanduser("~"), os.getcwd(),
                   os.path.dirname(compiled["file"])}
    for local_path in local_paths:
        if len(local_path) > 1:
            assert local_path not in compiled["text"], local_path


def test_vertex_sdk_builds_a_job_from_the_spec_offline(compiled):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    def vertex_job(parameter_values):
        return aiplatform.PipelineJob(
            display_name="selfsup", template_path=compiled["file"], parameter_values=parameter_values,
            project="example-project", location="europe-west4", credentials=AnonymousCredentials(),
        )

    runtime_config = vertex_job({"data_path": "gs://other/images"})._gca_resource.runtime_config  # nothing is sent
    assert runtime_config.gcs_output_directory == PIPELINE_ROOT
    assert runtime_config.parameter_values["data_path"] == "gs://other/images"
    with pytest.raises(ValueError, match="data_pat"):
        vertex_job({"data_pat": ""})


def test_json_output_is_a_pipeline_job_with_root_and_values(compiled, tmp_path):
    spec_file = runner.compile_pipeline(compiled["config"], str(tmp_path / "selfsup.json"))
    job = json_format.Parse(pathlib.Path(spec_file).read_text(), pipeline_spec_pb2.PipelineJob())
    assert job.runtime_config.gcs_output_directory == PIPELINE_ROOT
    values = {name: value.string_value for name, value in job.runtime_config.parameter_values.items()}
    assert values == root_defaults(compiled["spec"])


def test_multi_worker_training_runs_the_trainers_as_vertex_custom_jobs(tmp_path):
    config = load_config(write_config(tmp_path, with_kubeflow(
        trainer_workers=3, trainer_machine_type="n1-standard-8", trainer_accelerator_type="NVIDIA_TESLA_T4",
        trainer_accelerator_count=1, vertex_project="example-project", vertex_region="europe-west4")))
    spec = runner.load_pipeline_spec(runner.compile_pipeline(config, str(tmp_path / "selfsup.yaml")))
    parameters = {"Pretrainer": "pretrainer_custom_config", "CandidateTrainer": "candidate_custom_config",
                  "BaselineTrainer": "baseline_custom_config"}
    for component_id, parameter in parameters.items():
        assert container_of(spec, component_id)["args"][1] == VERTEX_TRAINER_EXECUTOR
        custom_config = json.loads(root_defaults(spec)[parameter])
        pools = custom_config["ai_platform_training_args"]["job_spec"]["worker_pool_specs"]
        assert [pool["replica_count"] for pool in pools] == [1, 2]
        assert {pool["container_spec"]["image_uri"] for pool in pools} == {IMAGE}
        assert custom_config["ai_platform_vertex_region"] == "europe-west4"
        # The Vertex job's keys are ones the Trainer accepts beside the training: section (others are errors).
        rebuilt = training_config_from_custom_config(custom_config)
        assert rebuilt.encoder == config.training.encoder and rebuilt.seed == config.training.seed
        if component_id == "CandidateTrainer":
            assert rebuilt == config.training
        assert {vertex_constants.ENABLE_VERTEX_KEY, vertex_constants.VERTEX_REGION_KEY,
                vertex_trainer_executor.TRAINING_ARGS_KEY} <= set(custom_config) - set(config.training.to_dict())
    assert container_of(spec, "Evaluator")["args"][1] == "tfx.components.evaluator.executor.Executor"


def test_single_pod_trainer_gets_the_resource_limits(tmp_path):
    config = load_config(write_config(tmp_path, with_kubeflow(
        trainer_strategy="mirrored", trainer_cpu_limit=8, trainer_memory_limit=30,
        trainer_accelerator_type="NVIDIA_TESLA_T4", trainer_accelerator_count=2)))
    spec = runner.load_pipeline_spec(runner.compile_pipeline(config, str(tmp_path / "selfsup.yaml")))
    resources = container_of(spec, "CandidateTrainer")["resources"]
    assert (resources["cpuLimit"], resources["memoryLimit"]) == (8.0, 30.0)
    assert resources["accelerator"] == {"type": "NVIDIA_TESLA_T4", "count": "2"}
    assert json.loads(root_defaults(spec)["baseline_custom_config"])["strategy"] == "mirrored"
    assert "resources" not in container_of(spec, "Evaluator")


@pytest.mark.parametrize("overrides, key", [
    ({"kubeflow.pipeline_root": "/data/selfsup-root"}, "kubeflow.pipeline_root"),
    ({"kubeflow.pipeline_root": "gs://"}, "kubeflow.pipeline_root"),
    ({"kubeflow.image": None}, "kubeflow.image"),
    ({"kubeflow.image": "https://registry/selfsup:1"}, "kubeflow.image"),
    ({"kubeflow.beam_args": ["DataflowRunner"]}, "kubeflow.beam_args[0]"),
    ({"kubeflow.trainer_workers": 2}, "kubeflow.vertex_project"),
    ({"kubeflow.trainer_accelerator_count": 1}, "kubeflow.trainer_accelerator_count"),
    ({"data.path": "/home/someone/images"}, "data.path"),
    ({"pipeline.name": "self_sup"}, "pipeline.name"),
    ({"training.strategy": "mirrored", "kubeflow.trainer_workers": 2, "kubeflow.vertex_project": "p",
      "kubeflow.vertex_region": "r", "kubeflow.trainer_machine_type": "m"}, "training.strategy"),
    ({"kubeflow.trainer_strategy": "mirrored", "kubeflow.trainer_workers": 2, "kubeflow.vertex_project": "p",
      "kubeflow.vertex_region": "r", "kubeflow.trainer_machine_type": "m"}, "kubeflow.trainer_strategy"),
])
def test_a_bad_kubeflow_config_fails_naming_the_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        runner.check_compilable(load_config(write_config(tmp_path, CONFIG), overrides))


def test_an_unknown_spec_extension_is_rejected(compiled):
    with pytest.raises(ValueError, match="must end with one of"):
        runner.compile_pipeline(compiled["config"], "selfsup.txt")


def compile_command(argv) -> int:
    parser = argparse.ArgumentParser(prog="selfsup")
    add_compile_kubeflow_parser(parser.add_subparsers(dest="command", required=True))
    return run_compile_kubeflow(parser.parse_args(["compile-kubeflow", *argv]))


def test_cli_writes_the_spec_and_lists_the_runtime_parameters(tmp_path, capsys):
    config_file = write_config(tmp_path, CONFIG)
    output = tmp_path / "selfsup.yaml"
    assert compile_command(["--config", config_file, "--output", str(output), "--image", "registry/selfsup:2"]) == 0
    printed = capsys.readouterr().out
    assert str(output) in printed and "registry/selfsup:2" in printed
    assert all(name in printed for name in RUNTIME_PARAMETERS)
    assert container_of(runner.load_pipeline_spec(str(output)), "Pusher")["image"] == "registry/selfsup:2"
    bad_config = write_config(tmp_path, with_kubeflow(pipeline_root="/tmp/root"))
    assert compile_command(["--config", bad_config, "--output", str(output)]) == 2
    assert "'kubeflow.pipeline_root'" in capsys.readouterr().err


def pinned_versions() -> dict:
    pins = (line.split("==") for line in LOCK_FILE.read_text().splitlines() if "==" in line)
    return {name.lower(): version for name, version in pins}


def test_dockerfile_base_images_match_the_lock():
    text = DOCKERFILE.read_text()
    pins = pinned_versions()
    assert re.findall(r"^FROM gcr\.io/tfx-oss-public/tfx:(\S+)\s*$", text, re.MULTILINE) == [pins["tfx"]]
    beam_python, beam_version = re.search(r"^FROM apache/beam_python(\S+)_sdk:(\S+) AS", text, re.MULTILINE).groups()
    assert beam_version == pins["apache-beam"]
    assert beam_python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert "pip install --no-cache-dir -c requirements/lock.txt ." in text


def dockerfile_sources() -> list:
    """The repository files and folders that the Dockerfile's COPY lines (not COPY --from) put in the image."""
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources.extend(line.split()[1:-1])
    return sources


def build_context(destination: pathlib.Path) -> pathlib.Path:
    for source in dockerfile_sources():
        origin, target = REPO_ROOT / source, destination / source
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(origin, target)
    return destination


IMPORT_CHECK = """
import importlib, json, sys
target, executor_paths, run_fn = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
for path in executor_paths + [run_fn, "pipeline.cli.main", "selfsup_kubeflow.cli.run_compile_kubeflow"]:
    module_name, attribute = path.rsplit(".", 1)
    module = importlib.import_module(module_name)
    getattr(module, attribute)
    if module_name.split(".")[0] in ("trainer", "components", "pipeline", "selfsup_kubeflow"):
        assert module.__file__.startswith(target), (module_name, module.__file__)
from components.evaluation_report.html_report import TEMPLATE, template_environment
template = template_environment().get_template(TEMPLATE)  # the report's template, package data of the wheel
assert template.filename.startswith(target), template.filename
print("imports: ok")
"""


def test_the_package_built_from_the_dockerfile_files_imports_every_module_path(compiled, tmp_path):
    context = build_context(tmp_path / "context")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    str(context), "-w", str(tmp_path / "wheels")], check=True)
    (wheel,) = (tmp_path / "wheels").glob("selfsup-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in PACKAGE_FILES if name not in names]
    assert not missing, f"the wheel (what the image installs) lacks {missing}"
    assert not [name for name in names if name.startswith("kubeflow/")]  # the Kubeflow SDK's namespace
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "selfsup = pipeline.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    assert "Requires-Dist: jinja2" in zipfile.ZipFile(wheel).read(metadata).decode()  # the report's templates

    target = tmp_path / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                    str(wheel)], check=True)
    executor_paths = sorted({container_of(compiled["spec"], component_id)["args"][1]
                             for component_id in component_ids(compiled["config"])}
                            | {VERTEX_TRAINER_EXECUTOR, f"{kubeflow_driver.DRIVER_MODULE}.main"})
    environment = dict(os.environ, PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK, str(target), json.dumps(executor_paths), TRAINER_RUN_FN],
        cwd=tmp_path, env=environment, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imports: ok" in result.stdout


def test_a_kubeflow_package_of_another_distribution_imports_beside_selfsup(tmp_path):
    """selfsup installs kubeflow/ as `selfsup_kubeflow`, and the folder has no __init__.py: the Kubeflow SDK's
    `kubeflow` (a regular package, e.g. `kubeflow.trainer`) imports beside selfsup, even with the repository root
    first on sys.path (`python -c` run in it)."""
    sdk = tmp_path / "site-packages" / "kubeflow"
    (sdk / "trainer").mkdir(parents=True)
    (sdk / "__init__.py").write_text('"""Another distribution\'s kubeflow package."""\n')
    (sdk / "trainer" / "__init__.py").write_text("TRAINER = 'sdk'\n")
    check = ("import kubeflow.trainer, selfsup_kubeflow.cli, selfsup_kubeflow.runner; "
             "print(kubeflow.__file__, kubeflow.trainer.TRAINER, selfsup_kubeflow.cli.__file__)")
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(sdk.parent), TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [str(sdk / "__init__.py"), "sdk", str(REPO_ROOT / "kubeflow" / "cli.py")]
    assert not (REPO_ROOT / "kubeflow" / "__init__.py").exists()


def test_only_image_example_gen_gets_the_fingerprint_hook_before_the_cache_check(compiled):
    for component_id in component_ids(compiled["config"]):
        container = container_of(compiled["spec"], component_id)
        if component_id != "ImageExampleGen":
            assert "lifecycle" not in container, component_id
            continue
        hook = container["lifecycle"]["preCacheCheck"]
        assert hook["command"] == ["python", "-m", "components.image_example_gen.kubeflow_driver"]
        # As TFX's FileBasedExampleGen hook: the executor's arguments after its class path.
        assert hook["args"] == container["args"][2:]
        assert hook["args"][:3] == ["--json_serialized_invocation_args", "{{$}}", "--json_serialized_inputs_spec_args"]
        assert hook["args"][-len(BEAM_ARGS):] == BEAM_ARGS
    assert kubeflow_driver.DRIVER_MODULE == kubeflow_driver.__name__
    json_job = runner.load_pipeline_spec(runner.compile_pipeline(compiled["config"], str(
        pathlib.Path(compiled["file"]).with_suffix(".json"))))
    assert container_of(json_job, "ImageExampleGen")["lifecycle"] == container_of(
        compiled["spec"], "ImageExampleGen")["lifecycle"]


def test_the_fingerprint_hook_writes_what_the_local_driver_computes(compiled, tmp_path):
    """The hook as the backend runs it: the compiled command and arguments, `{{$}}` replaced by an
    ExecutorInput holding the parameters as the compiled task passes them (data_path set per run)."""
    data = write_image_folder(tmp_path / "data")
    spec = compiled["spec"]
    hook = container_of(spec, "ImageExampleGen")["lifecycle"]["preCacheCheck"]
    properties = {"data_config": root_defaults(spec)["data_config"], "data_path": str(data),
                  "min_eval_per_class": 20}
    assert spec.root.dag.tasks["ImageExampleGen"].inputs.parameters[
        "min_eval_per_class"].runtime_value.constant.number_value == 20
    executor_input = pipeline_spec_pb2.ExecutorInput()
    for name, value in properties.items():
        field = "number_value" if isinstance(value, int) else "string_value"
        setattr(executor_input.inputs.parameter_values[name], field, value)
    for key, definition in spec.components["ImageExampleGen"].output_definitions.artifacts.items():
        artifact = executor_input.outputs.artifacts[key].artifacts.add(name=key, uri=f"gs://bucket/run/{key}")
        artifact.type.CopyFrom(definition.artifact_type)
    output_file = tmp_path / "outputs" / "executor_output.json"
    executor_input.outputs.output_file = str(output_file)
    invocation = json_format.MessageToJson(executor_input)
    command = [sys.executable, *hook["command"][1:]] + [invocation if arg == "{{$}}" else arg for arg in hook["args"]]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]

    executor_output = json_format.Parse(output_file.read_text(), pipeline_spec_pb2.ExecutorOutput())
    fingerprint = executor_output.parameter_values["input_fingerprint"].string_value
    assert fingerprint == example_gen_driver.fingerprint_exec_property(properties)
    assert json.loads(fingerprint)["files"] == 26
    assert {key: [artifact.uri for artifact in artifacts.artifacts]
            for key, artifacts in executor_output.artifacts.items()} == {
        "examples": ["gs://bucket/run/examples"], "report": ["gs://bucket/run/report"]}
