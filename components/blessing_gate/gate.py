"""The rule of BlessingGate: a model is blessed only when every Evaluator blessed it."""

from typing import Iterable

from tfx.components.evaluator import constants as evaluator_constants
from tfx.types import artifact


def is_blessed(blessing: artifact.Artifact) -> bool:
    """What TFX's Pusher checks: the `blessed` custom property is 1."""
    return blessing.get_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY) == (
        evaluator_constants.BLESSED_VALUE)


def all_blessed(blessings: Iterable[artifact.Artifact]) -> bool:
    """True when there is at least one blessing and each says blessed."""
    blessings = list(blessings)
    return bool(blessings) and all(is_blessed(blessing) for blessing in blessings)
