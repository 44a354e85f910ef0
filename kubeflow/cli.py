"""`selfsup compile-kubeflow`: the pipeline as a Kubeflow Pipelines (v2) / Vertex AI Pipelines spec.

    selfsup compile-kubeflow --config FILE --output FILE.yaml [--image IMAGE]

TFX and KFP are imported only when the command runs, so that `selfsup --help` stays fast.
"""

import argparse
import sys

SHOWN_CHARACTERS = 70


def add_compile_kubeflow_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the `compile-kubeflow` command to the `selfsup` sub-command parsers.

    Args:
      subparsers: what `argparse.ArgumentParser.add_subparsers()` returned.

    Returns:
      The new sub-command parser.
    """
    parser = subparsers.add_parser(
        "compile-kubeflow", help="compile the pipeline to a Kubeflow Pipelines v2 / Vertex AI Pipelines spec"
    )
    parser.add_argument("--config", required=True,
                        help="YAML config file with a kubeflow: section (pipeline_root, image, ...)")
    parser.add_argument("--output", required=True,
                        help="spec file to write: .yaml or .yml (PipelineSpec) or .json (PipelineJob)")
    parser.add_argument("--image", help="overrides kubeflow.image (e.g. the tag just pushed)")
    return parser


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return text[:SHOWN_CHARACTERS] + "..."


def _print_runtime_parameters(spec_file: str) -> None:
    from selfsup_kubeflow.runner import load_pipeline_spec

    parameters = load_pipeline_spec(spec_file).root.input_definitions.parameters
    print("runtime parameters (set per run; everything else was fixed when compiling):")
    for name in sorted(parameters):
        declared = parameters[name]
        default = (f"default {_shorten(declared.default_value.string_value)!r}" if declared.HasField("default_value")
                   else "required")
        print(f"  {name}: {default}\n      {declared.description}")


def run_compile_kubeflow(args: argparse.Namespace) -> int:
    """Runs `selfsup compile-kubeflow`; returns the exit status (2 for a bad config or output name).

    Args:
      args: the parsed arguments of the `compile-kubeflow` parser.

    Returns:
      0 when the spec was written, 2 when the configuration or output name was rejected.
    """
    from pipeline.config import load_config
    from selfsup_kubeflow.runner import compile_pipeline

    overrides = {"kubeflow.image": args.image} if args.image else {}
    try:
        config = load_config(args.config, overrides)
        spec_file = compile_pipeline(config, args.output)
    except (ValueError, FileNotFoundError) as error:  # ConfigError is a ValueError
        print(f"selfsup: error: {error}", file=sys.stderr)
        return 2
    print(f"selfsup: wrote the Kubeflow pipeline spec to {spec_file}")
    print(f"  image: {config.kubeflow.image}\n  pipeline root: {config.kubeflow.pipeline_root}")
    _print_runtime_parameters(spec_file)
    return 0
