"""Both models' answers on every eval example, compared in pairs; comparison.json in and out.

Plain functions: the executor only resolves artifact folders and calls `compare_models`, and the
summary, the report and BlessingGate read the result with components/model_comparison.py.
"""

from typing import Any, Dict, List, Tuple

import numpy as np
import tensorflow as tf

from components.paired_comparison.statistics import compare_correctness
from trainer.contract import CLASS_IDS_OUTPUT, LABEL_FEATURE, SERVING_SIGNATURE

PREDICT_BATCH_SIZE = 256


def predict_eval_examples(example_files: List[str], model_dirs: Dict[str, str],
                          batch_size: int = PREDICT_BATCH_SIZE) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Every example's label and each model's predicted class, in the same order.

    Args:
      example_files: gzip TFRecord files of tf.Examples with an int64 `label` (the eval split).
      model_dirs: {name: SavedModel folder}; each has a `serving_default` signature taking serialized
        tf.Examples and returning `class_ids` (B,).
      batch_size: examples per prediction call.

    Returns:
      labels (n,) int64 and {name: class ids (n,) int64}.

    Raises:
      ValueError: no files, a label below 0, or a signature that returns another number of predictions.
    """
    if not example_files:
        raise ValueError("the eval split has no example files to compare the models on")
    loaded = {name: tf.saved_model.load(folder) for name, folder in model_dirs.items()}  # keeps the signatures alive
    signatures = {name: model.signatures[SERVING_SIGNATURE] for name, model in loaded.items()}
    input_names = {}
    for name, signature in signatures.items():
        (input_names[name],) = signature.structured_input_signature[1]
    labels: List[np.ndarray] = []
    predictions: Dict[str, List[np.ndarray]] = {name: [] for name in signatures}
    features = {LABEL_FEATURE: tf.io.FixedLenFeature([], tf.int64)}
    for batch in tf.data.TFRecordDataset(example_files, compression_type="GZIP").batch(batch_size):
        batch_labels = tf.io.parse_example(batch, features)[LABEL_FEATURE].numpy()
        labels.append(batch_labels)
        for name, signature in signatures.items():
            class_ids = signature(**{input_names[name]: batch})[CLASS_IDS_OUTPUT].numpy().reshape(-1)
            if class_ids.size != batch_labels.size:
                raise ValueError(f"model {name!r} returned {class_ids.size} class ids for {batch_labels.size} examples")
            predictions[name].append(class_ids)
    all_labels = np.concatenate(labels) if labels else np.zeros([0], np.int64)
    if np.any(all_labels < 0):
        raise ValueError(f"{int(np.sum(all_labels < 0))} eval examples have no label (label < 0)")
    return all_labels, {name: np.concatenate(values) if values else np.zeros([0], np.int64)
                        for name, values in predictions.items()}


def compare_models(example_files: List[str], candidate_dir: str, baseline_dir: str, *, significance_level: float,
                   resamples: int, seed: int) -> Dict[str, Any]:
    """Predicts the eval examples with both SavedModels and compares their paired correctness.

    Returns:
      statistics.compare_correctness's record.
    """
    labels, class_ids = predict_eval_examples(example_files, {"candidate": candidate_dir, "baseline": baseline_dir})
    return compare_correctness(class_ids["candidate"] == labels, class_ids["baseline"] == labels,
                               significance_level=significance_level, resamples=resamples, seed=seed)
