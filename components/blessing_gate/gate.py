"""The rule of BlessingGate: a model is blessed only when every Evaluator blessed it and, when the paired
comparison is given (evaluation.require_significant), the candidate is significantly better."""

from typing import Any, Dict, Iterable, Optional

from tfx.components.util.model_utils import is_model_blessed
from tfx.types import artifact

from components.model_comparison import significantly_better


def all_blessed(blessings: Iterable[artifact.Artifact]) -> bool:
    """True when there is at least one blessing and each says blessed (TFX's Pusher check on each)."""
    blessings = list(blessings)
    return bool(blessings) and all(is_model_blessed(blessing) for blessing in blessings)


def gate_blesses(blessings: Iterable[artifact.Artifact], comparison: Optional[Dict[str, Any]]) -> bool:
    """all_blessed, and with a comparison (comparison.json's record) also significantly_better."""
    return all_blessed(blessings) and (comparison is None or significantly_better(comparison))
