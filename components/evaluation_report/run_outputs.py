"""What the report's upstream components recorded in MLMD: the custom properties of their output artifacts.

One reading for the component (the executor passes `artifact.mlmd_artifact` of its TFX inputs) and for the
post-run code (pipeline/results reads the same protos from MLMD): where the Pusher copied the model, which
model ProductionModel copied.
"""

from typing import Iterable, Optional, Union

from ml_metadata.proto import metadata_store_pb2

from trainer import contract

Artifact = metadata_store_pb2.Artifact


def custom_property(artifact: Optional[Artifact], name: str) -> Union[int, str, None]:
    """An int or string custom property of an MLMD artifact; None without the artifact or the property."""
    if artifact is None or name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    return value.int_value if value.HasField("int_value") else value.string_value


def pushed_destination(pushed_models: Iterable[Artifact]) -> Optional[str]:
    """Where TFX's Pusher copied the model, or None when it pushed nothing (or did not run)."""
    for pushed_model in pushed_models:
        if custom_property(pushed_model, contract.PUSHED_PROPERTY):
            return custom_property(pushed_model, contract.PUSHED_DESTINATION_PROPERTY)
    return None


def pushed_production_model(production_models: Iterable[Artifact]) -> Optional[str]:
    """The pushed folder ProductionModel copied, or None when it copied the supervised baseline (or did not run)."""
    for model in production_models:
        if custom_property(model, contract.PRODUCTION_SOURCE_PROPERTY) == contract.PRODUCTION_FROM_PUSHED:
            return custom_property(model, contract.PRODUCTION_MODEL_PROPERTY)
    return None

