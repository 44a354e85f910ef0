"""The rule of BlessingGate: a model is blessed only when every Evaluator blessed it."""

from typing import Iterable

from tfx.components.util.model_utils import is_model_blessed
from tfx.types import artifact


def all_blessed(blessings: Iterable[artifact.Artifact]) -> bool:
    """True when there is at least one blessing and each says blessed (TFX's Pusher check on each)."""
    blessings = list(blessings)
    return bool(blessings) and all(is_model_blessed(blessing) for blessing in blessings)
