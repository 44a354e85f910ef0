"""Reads what one run of a pipeline did from MLMD: each component's state and outputs.

A run is found by its run id (the `pipeline_run` context's name), never as "the latest": two runs
into one MLMD would otherwise read each other's results.
"""

from typing import Dict, List, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

_STATE_NAMES = {
    value: name for name, value in metadata_store_pb2.Execution.State.items()
}


def open_store(metadata_path: str) -> mlmd.MetadataStore:
    return mlmd.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))


def run_results(store: mlmd.MetadataStore, pipeline_name: str, run_id: str) -> Optional[Dict[str, Dict]]:
    """{component id: {"state": "COMPLETE" | "CACHED" | "FAILED" | ..., "outputs": {key: [artifact]}}}
    for the pipeline run `run_id`, or None when MLMD has no such run."""
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    if run is None:
        return None
    run_execution_ids = {e.id for e in store.get_executions_by_context(run.id)}
    results: Dict[str, Dict] = {}
    prefix = pipeline_name + "."
    for node in store.get_contexts_by_type("node"):
        if not node.name.startswith(prefix):
            continue
        executions = [e for e in store.get_executions_by_context(node.id) if e.id in run_execution_ids]
        if not executions:
            continue
        execution = max(executions, key=lambda e: e.id)
        results[node.name[len(prefix):]] = {
            "state": _STATE_NAMES.get(execution.last_known_state, str(execution.last_known_state)),
            "outputs": _outputs(store, execution.id),
            "properties": {key: _value(value) for key, value in execution.custom_properties.items()},
            # MLMD's times are milliseconds since the epoch: registered, then last updated (published).
            "seconds": round((execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000, 1),
        }
    return results


def single_output(results: Dict[str, Dict], component: str, key: str) -> Optional[metadata_store_pb2.Artifact]:
    """The MLMD artifact of a component's output in the run (run_results), or None."""
    artifacts = results.get(component, {}).get("outputs", {}).get(key, [])
    return artifacts[0] if artifacts else None


def latest_run_id(store: mlmd.MetadataStore, pipeline_name: str) -> Optional[str]:
    """The id of the newest run of `pipeline_name` (for `selfsup report` on an existing output folder)."""
    pipeline_context = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_context is None:
        return None
    pipeline_execution_ids = {e.id for e in store.get_executions_by_context(pipeline_context.id)}
    runs = [
        context for context in store.get_contexts_by_type("pipeline_run")
        if pipeline_execution_ids & {e.id for e in store.get_executions_by_context(context.id)}
    ]
    return max(runs, key=lambda context: (context.create_time_since_epoch, context.id)).name if runs else None


def previous_property(store: mlmd.MetadataStore, pipeline_name: str, component: str, name: str,
                      before_run_id: str) -> Optional[str]:
    """A component's execution property `name` in its newest completed execution outside run `before_run_id`
    (what the previous run saw, e.g. ImageExampleGen's input fingerprint), or None."""
    node = store.get_context_by_type_and_name("node", f"{pipeline_name}.{component}")
    run = store.get_context_by_type_and_name("pipeline_run", before_run_id)
    if node is None:
        return None
    this_run = {e.id for e in store.get_executions_by_context(run.id)} if run is not None else set()
    complete = metadata_store_pb2.Execution.COMPLETE
    for execution in sorted(store.get_executions_by_context(node.id), key=lambda e: -e.id):
        if (execution.id not in this_run and execution.last_known_state == complete
                and name in execution.custom_properties):
            return _value(execution.custom_properties[name])
    return None


def _value(value: metadata_store_pb2.Value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in ("int_value", "double_value", "string_value", "bool_value") else None


def _outputs(store: mlmd.MetadataStore, execution_id: int) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    events = [
        event for event in store.get_events_by_execution_ids([execution_id])
        if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    ]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([event.artifact_id for event in events])}
    outputs: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        outputs.setdefault(key, []).append(artifacts[event.artifact_id])
    return outputs
