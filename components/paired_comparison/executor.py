"""PairedComparison executor: resolves the eval split and both models, compares, writes comparison.json."""

import os
from typing import Any, Dict, List

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.model_comparison import DIFFERENCE_PROPERTY, P_VALUE_PROPERTY, SIGNIFICANT_PROPERTY, write_comparison
from components.paired_comparison.comparison import compare_models
from trainer import log
from trainer.contract import EVAL_SPLIT

LOG = log.get(__name__)


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        if EVAL_SPLIT not in artifact_utils.decode_split_names(examples.split_names):
            raise ValueError(f"the examples at {examples.uri} have no {EVAL_SPLIT!r} split to compare the models on")
        eval_folder = artifact_utils.get_split_uri([examples], EVAL_SPLIT)
        comparison = compare_models(
            tf.io.gfile.glob(os.path.join(eval_folder, "*")),
            path_utils.serving_model_path(artifact_utils.get_single_uri(input_dict["model"])),
            path_utils.serving_model_path(artifact_utils.get_single_uri(input_dict["baseline_model"])),
            significance_level=exec_properties["significance_level"],
            resamples=exec_properties["bootstrap_resamples"],
            seed=exec_properties["seed"],
        )
        comparison["required"] = bool(exec_properties["require_significant"])
        output = artifact_utils.get_single_instance(output_dict["comparison"])
        write_comparison(comparison, output.uri)
        output.set_float_custom_property(P_VALUE_PROPERTY, comparison["p_value"])
        output.set_float_custom_property(DIFFERENCE_PROPERTY, comparison["difference"])
        output.set_int_custom_property(SIGNIFICANT_PROPERTY, int(comparison["significant"]))
        LOG.info("PairedComparison: difference %+.4f, %.0f%% interval [%+.4f, %+.4f], McNemar p=%.4g on %d "
                     "eval images", comparison["difference"], 100 * comparison["confidence"], comparison["ci_low"],
                     comparison["ci_high"], comparison["p_value"], comparison["eval_images"])
