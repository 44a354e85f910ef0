"""Reads what the latest run of a pipeline did from MLMD: each component's state and outputs."""

from typing import Dict, List, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

_STATE_NAMES = {
    value: name for name, value in metadata_store_pb2.Execution.State.items()
}


def open_store(metadata_path: str) -> mlmd.MetadataStore:
    return mlmd.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))


def latest_run(store: mlmd.MetadataStore, pipeline_name: str) -> Optional[Dict[str, Dict]]:
    """{component id: {"state": "COMPLETE" | "CACHED" | "FAILED" | ..., "outputs": {key: [artifact]}}}
    for the newest pipeline run, or None when the pipeline never ran."""
    pipeline_context = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_context is None:
        return None
    pipeline_execution_ids = {e.id for e in store.get_executions_by_context(pipeline_context.id)}
    runs = [
        context for context in store.get_contexts_by_type("pipeline_run")
        if pipeline_execution_ids & {e.id for e in store.get_executions_by_context(context.id)}
    ]
    if not runs:
        return None
    run = max(runs, key=lambda context: (context.create_time_since_epoch, context.id))
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
        }
    return results


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
