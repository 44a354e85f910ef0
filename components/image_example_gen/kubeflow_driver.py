"""ImageExampleGen's driver on Kubeflow Pipelines v2 / Vertex AI: the input fingerprint before the cache check.

On KFP v2 the step containers never run TFX's launcher, so `driver.InputFingerprintDriver` does not
run there: the backend decides caching from the task's parameters alone. TFX's own FileBasedExampleGen
solves this with a `lifecycle.preCacheCheck` hook on its container
(tfx/orchestration/kubeflow/v2/step_builder.py, `_build_file_based_example_gen_spec`) that runs
tfx/orchestration/kubeflow/v2/file_based_example_gen/driver.py. This module is the same for
ImageExampleGen: kubeflow/runner.py sets it as the hook, with the container's own arguments; it reads
the ExecutorInput, computes the fingerprint exactly as the local driver does, and writes an
ExecutorOutput whose `input_fingerprint` parameter the backend adds to the task's properties before
it looks up the cache.

    python -m components.image_example_gen.kubeflow_driver --json_serialized_invocation_args '{{$}}'
        [--json_serialized_inputs_spec_args JSON] [Beam arguments, ignored]
"""

import argparse
import os
import sys
from typing import List, Optional

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.io import fileio
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils

from components.image_example_gen.driver import fingerprint_exec_property
from trainer import log
from trainer.contract import INPUT_FINGERPRINT_PROPERTY

LOG = log.get(__name__)

# The hook's command in the compiled spec (kubeflow/runner.py); the module's own name.
DRIVER_MODULE = "components.image_example_gen.kubeflow_driver"
DRIVER_COMMAND = ("python", "-m", DRIVER_MODULE)


def run_driver(executor_input: pipeline_spec_pb2.ExecutorInput,
               inputs_spec: Optional[pipeline_spec_pb2.ComponentInputsSpec] = None) -> pipeline_spec_pb2.ExecutorOutput:
    """Computes the fingerprint and writes the ExecutorOutput to `executor_input.outputs.output_file`.

    Args:
      executor_input: the task's invocation (its parameters, output artifacts and output file).
      inputs_spec: the component's input definitions (pipeline spec 2.1: the parameter types).

    Returns:
      The ExecutorOutput written: the `input_fingerprint` parameter, and the output artifacts as
      they came (as TFX's driver returns its Examples artifact).
    """
    exec_properties = kubeflow_v2_entrypoint_utils.parse_execution_properties(
        executor_input.inputs.parameter_values, executor_input.inputs.parameters, inputs_spec)
    fingerprint = fingerprint_exec_property(exec_properties)
    LOG.info("ImageExampleGen input fingerprint: %s", fingerprint)
    executor_output = pipeline_spec_pb2.ExecutorOutput()
    executor_output.parameter_values[INPUT_FINGERPRINT_PROPERTY].string_value = fingerprint
    for key, artifacts in executor_input.outputs.artifacts.items():
        executor_output.artifacts[key].CopyFrom(artifacts)
    output_file = executor_input.outputs.output_file
    fileio.makedirs(os.path.dirname(output_file))
    with fileio.open(output_file, "wb") as handle:
        handle.write(json_format.MessageToJson(executor_output, sort_keys=True))
    return executor_output


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(prog=DRIVER_MODULE, description=__doc__.split("\n")[0])
    parser.add_argument("--json_serialized_invocation_args", required=True, help="the ExecutorInput as JSON")
    parser.add_argument("--json_serialized_inputs_spec_args", help="the ComponentInputsSpec as JSON")
    args, _ = parser.parse_known_args(argv)  # the Beam arguments follow, as on the executor's command line
    executor_input = json_format.Parse(args.json_serialized_invocation_args, pipeline_spec_pb2.ExecutorInput(),
                                       ignore_unknown_fields=True)
    inputs_spec = None
    if args.json_serialized_inputs_spec_args:
        inputs_spec = json_format.Parse(args.json_serialized_inputs_spec_args,
                                        pipeline_spec_pb2.ComponentInputsSpec(), ignore_unknown_fields=True)
    run_driver(executor_input, inputs_spec)


if __name__ == "__main__":
    main(sys.argv[1:])
