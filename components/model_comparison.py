"""The ModelComparison artifact's file, comparison.json, and the rule read from it: what PairedComparison writes
and BlessingGate, the report and summary.json read. A component imports this module, never
components/paired_comparison/'s own (tests/test_import_layers.py)."""

import json
import os
from typing import Any, Dict, Optional

import tensorflow as tf

COMPARISON_FILE = "comparison.json"
# Custom properties of the ModelComparison artifact.
P_VALUE_PROPERTY, DIFFERENCE_PROPERTY, SIGNIFICANT_PROPERTY = "p_value", "difference", "significant"
# The fields summary.json's `significance` holds (see README: Outputs); comparison.json has more.
SUMMARY_FIELDS = ("candidate_accuracy", "baseline_accuracy", "difference", "ci_low", "ci_high", "confidence",
                  "p_value", "significant", "significance_level", "required", "eval_images")


def write_comparison(comparison: Dict[str, Any], folder: str) -> str:
    tf.io.gfile.makedirs(folder)
    path = os.path.join(folder, COMPARISON_FILE)
    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(comparison, handle, indent=1)
    return path


def read_comparison(folder: str) -> Dict[str, Any]:
    """The record in a ModelComparison artifact's folder; ValueError when it has none."""
    path = os.path.join(folder, COMPARISON_FILE)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{path} does not exist: the paired comparison did not complete")
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def significance_summary(folder: Optional[str]) -> Optional[Dict[str, Any]]:
    """The fields of the comparison that summary.json and the report show, or None without a comparison."""
    if folder is None:
        return None
    comparison = read_comparison(folder)
    return {field: comparison[field] for field in SUMMARY_FIELDS}


def significantly_better(comparison: Dict[str, Any]) -> bool:
    """The candidate is more accurate and the difference is significant at the comparison's level."""
    return comparison["difference"] > 0 and comparison["p_value"] < comparison["significance_level"]
